"""What a :class:`~zerofeed.consumer.FeedSequence` reports about itself."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FeedStats", "SkippedSample"]


@dataclass(frozen=True, kw_only=True)
class SkippedSample:
    """A sample dropped from its batch (``on_error="skip"``) or that stopped training (``"raise"``)."""

    path: str
    kind: str
    reason: str
    epoch: int
    producer: str


@dataclass(frozen=True, kw_only=True)
class FeedStats:
    """A snapshot of a feed's counters.

    Attributes:
        batches_delivered: batches returned by ``__getitem__``.
        images_delivered: images in those batches.
        skipped: samples that could not be made, with the reason (each listed once per epoch).
        wait_seconds: time ``__getitem__`` spent waiting for data.
        producers_connected: producer workers connected now.
        tasks_issued: tasks sent to producers.
        tasks_reissued: tasks handed to another producer after theirs was lost or left.
        producers_lost: producers declared lost after missing their lease.
        messages_rejected: messages refused as malformed, unexpected or not matching a lease.
        connections_refused: connections refused by CURVE authentication or failing their
            handshake (a producer without the right keys).
        peak_outstanding: the most batches ever in flight or held at once (bounded by max_queue_size,
            plus one batch asked for out of turn).
        epoch: the current epoch.
    """

    batches_delivered: int
    images_delivered: int
    skipped: tuple[SkippedSample, ...]
    wait_seconds: float
    producers_connected: int
    tasks_issued: int
    tasks_reissued: int
    producers_lost: int
    messages_rejected: int
    connections_refused: int
    peak_outstanding: int
    epoch: int

"""What a :class:`~zerofeed.consumer.FeedSequence` reports about itself."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["SKIPPED_KEPT", "FeedStats", "SkippedSample"]

SKIPPED_KEPT = 1000
"""How many of the most recent skipped samples :attr:`FeedStats.skipped` lists."""


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
        skipped: the most recent samples that could not be made, with the reason (each listed
            once per epoch; at most :data:`SKIPPED_KEPT`, so that a long run's memory stays flat).
        samples_skipped: every sample that could not be made so far (``skipped`` is the tail).
        skipped_by_kind: ``samples_skipped`` by kind (``"missing"``, ``"decode"``, ...).
        wait_seconds: time ``__getitem__`` spent waiting for data.
        producers_connected: producer workers connected now.
        producer_seconds: seconds of connection summed over every producer worker so far; its
            change over an interval divided by the interval is the mean number connected.
        tasks_issued: tasks sent to producers.
        tasks_reissued: tasks handed to another producer after theirs was lost or left.
        producers_lost: producers declared lost after missing their lease.
        messages_rejected: messages refused as malformed, unexpected or not matching a lease.
        connections_refused: connections refused by CURVE authentication or failing their
            handshake (a producer without the right keys).
        tasks_overdue: tasks issued to another producer as well because they took longer than
            the task deadline (the first valid result wins).
        results_duplicate: results dropped because another producer delivered the batch first.
        producers_refused: producers that get no more tasks because their results kept failing
            validation.
        slots_quarantined: shared-memory slots not lent now because a producer that vanished
            mid-task might still write them (lent again once its process has exited).
        batches_in_shared_memory: batches received in a shared-memory slot (the rest came over
            the socket).
        peak_outstanding: the most batches ever in flight or held at once (bounded by max_queue_size,
            plus one batch asked for out of turn).
        epoch: the current epoch.
    """

    batches_delivered: int
    images_delivered: int
    skipped: tuple[SkippedSample, ...]
    samples_skipped: int
    skipped_by_kind: Mapping[str, int]
    wait_seconds: float
    producers_connected: int
    tasks_issued: int
    tasks_reissued: int
    producers_lost: int
    messages_rejected: int
    connections_refused: int
    peak_outstanding: int
    tasks_overdue: int = 0
    results_duplicate: int = 0
    producers_refused: int = 0
    slots_quarantined: int = 0
    batches_in_shared_memory: int = 0
    producer_seconds: float = 0.0
    epoch: int

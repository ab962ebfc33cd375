"""The seam between the feed engine and whatever brings it batches.

:class:`~zerofeed.consumer.engine.Feed` asks a :class:`Transport` for the batch at ``(epoch,
batch)`` and tells it where the feed is; it never sees sockets. The real transport is the
:class:`~zerofeed.consumer.dispatcher.Dispatcher` (a ROUTER socket and its I/O thread, serving
producer processes); :class:`~zerofeed.consumer.mock.MockTransport` makes batches in process
with a function, for unit tests of the engine and its adapters (httpx's ``MockTransport`` is the
model).

Every method is thread-safe and returns without calling back into the feed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from zerofeed.common.errors import ZerofeedError
from zerofeed.consumer.recipe import BatchRecipe
from zerofeed.consumer.scheduler import Key, ReadyBatch

__all__ = ["Transport", "TransportCounters", "TransportFactory"]


@dataclass(frozen=True, kw_only=True)
class TransportCounters:
    """A consistent snapshot of a transport's counters (see :class:`~zerofeed.consumer.FeedStats`)."""

    wait_seconds: float = 0.0
    producers_connected: int = 0
    producer_seconds: float = 0.0
    tasks_issued: int = 0
    tasks_reissued: int = 0
    producers_lost: int = 0
    messages_rejected: int = 0
    connections_refused: int = 0
    peak_outstanding: int = 0
    tasks_overdue: int = 0
    results_duplicate: int = 0
    producers_refused: int = 0
    slots_quarantined: int = 0
    batches_in_shared_memory: int = 0


class Transport(Protocol):
    """Brings the batches of one feed."""

    @property
    def endpoint(self) -> str:
        """Where producers connect (a description for in-process transports)."""
        ...

    def get(self, key: Key, *, timeout: float | None) -> ReadyBatch:
        """Wait for batch ``key`` = (epoch, batch); moves forward to its epoch if it is later.

        Raises:
            FeedTimeoutError: nothing arrived within ``timeout`` seconds.
            ZerofeedError: the transport failed (:meth:`fail`) or was closed.
        """
        ...

    def move_to(self, epoch: int, batch: int = 0) -> None:
        """Serve from ``(epoch, batch)`` on, backwards too; what comes before is dropped."""
        ...

    def advance(self, epoch: int) -> None:
        """Move forward to the start of ``epoch``; nothing when already there or past it."""
        ...

    def counters(self) -> TransportCounters:
        """The counters now."""
        ...

    def producer_table(self) -> list[dict[str, Any]]:
        """The producers connected now: name, tasks held, capacity."""
        ...

    def set_status_source(self, source: Callable[[], dict[str, Any]]) -> None:
        """What ``zerofeed status`` is told (called on the transport's own thread)."""
        ...

    def fail(self, error: ZerofeedError) -> None:
        """Fail every wait, now and later, with ``error`` (e.g. the local producers died)."""
        ...

    def close(self) -> None:
        """Release everything; idempotent."""
        ...


TransportFactory = Callable[[BatchRecipe], Transport]
"""Makes the transport of a feed from its recipe."""

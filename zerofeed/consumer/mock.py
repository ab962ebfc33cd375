"""``MockTransport``: a feed whose batches a function makes in process — no sockets, no producers.

For unit tests of the feed engine and its adapters (as httpx's ``MockTransport``)::

    def handler(task: Task) -> np.ndarray:           # or (images, [Skipped, ...])
        return np.zeros((len(task.samples), 8, 8, 3), np.uint8)

    feed = Feed(pairs, data=DataConfig(image_size=(8, 8)), transport=MockTransport(handler))

The handler gets the very :class:`~zerofeed.common.protocol.Task` a producer would, so a test can
check which rows, seeds and settings each batch asks for. End-to-end tests use real producers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from zerofeed.common.errors import ProtocolError, ZerofeedError
from zerofeed.common.protocol import Skipped, Task
from zerofeed.consumer.recipe import BatchRecipe
from zerofeed.consumer.scheduler import Key, ReadyBatch
from zerofeed.consumer.transport import TransportCounters

__all__ = ["MockTransport"]

Handler = Callable[[Task], "np.ndarray | tuple[np.ndarray, Sequence[Skipped]]"]


class MockTransport:
    """A :class:`~zerofeed.consumer.transport.Transport` whose batches ``handler(task)`` makes.

    Pass the instance as ``Feed(..., transport=...)``: the feed calls it with its recipe.
    """

    def __init__(self, handler: Handler, *, producer: str = "mock") -> None:
        self._handler = handler
        self._producer = producer
        self._recipe: BatchRecipe | None = None
        self._lock = threading.Lock()
        self._floor: Key = (0, 0)
        self._tasks = 0
        self._failure: ZerofeedError | None = None
        self._closed = False
        self.calls: list[str] = []  # the transport methods called, in order, for tests to read

    def __call__(self, recipe: BatchRecipe) -> MockTransport:
        self._recipe = recipe
        return self

    @property
    def endpoint(self) -> str:
        return "mock://"

    def get(self, key: Key, *, timeout: float | None) -> ReadyBatch:
        recipe = self._bound()
        with self._lock:
            self.calls.append(f"get{key}")
            if self._failure is not None:
                raise self._failure
            if self._closed:
                raise ZerofeedError("the feed was closed while waiting for a batch")
            if key[0] > self._floor[0]:
                self._floor = (key[0], 0)
            elif key < self._floor:
                raise ZerofeedError(f"batch {key} comes before where the feed serves from")
            self._tasks += 1
            task_id = self._tasks
        rows = recipe.plan(key[0]).batch(key[1])
        task = recipe.task(task_id=task_id, epoch=key[0], batch=key[1], rows=rows, slot=None)
        made = self._handler(task)
        images, skipped = made if isinstance(made, tuple) else (made, ())
        skipped_rows = {s.index for s in skipped}
        kept = np.array([r for r in rows.tolist() if r not in skipped_rows], dtype=rows.dtype)
        expected = (len(kept), *recipe.image_shape)
        if images.shape != expected or images.dtype != np.dtype(recipe.dtype):
            raise ProtocolError(
                f"the mock handler made {images.shape} {images.dtype}; expected {expected} "
                f"{recipe.dtype}"
            )
        return ReadyBatch(key, images, kept, tuple(skipped), self._producer)

    def move_to(self, epoch: int, batch: int = 0) -> None:
        with self._lock:
            self.calls.append(f"move_to{(epoch, batch)}")
            self._floor = (epoch, batch)

    def advance(self, epoch: int) -> None:
        with self._lock:
            self.calls.append(f"advance({epoch})")
            if epoch > self._floor[0]:
                self._floor = (epoch, 0)

    def counters(self) -> TransportCounters:
        with self._lock:
            return TransportCounters(tasks_issued=self._tasks, producers_connected=1)

    def producer_table(self) -> list[dict[str, Any]]:
        return [{"name": self._producer, "tasks": 0, "capacity": 1}]

    def set_status_source(self, source: Callable[[], dict[str, Any]]) -> None:
        pass

    def fail(self, error: ZerofeedError) -> None:
        with self._lock:
            self._failure = error

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def _bound(self) -> BatchRecipe:
        if self._recipe is None:
            raise ZerofeedError("MockTransport is used by passing it as Feed(..., transport=...)")
        return self._recipe

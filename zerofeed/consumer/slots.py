"""The consumer's pool of shared-memory batch slots, lent to local producers task by task.

A task for a producer that mapped the pool's file carries a free slot; the producer renders the
batch into it and answers with the slot instead of a frame, and the batch handed to Keras *is*
that memory. A slot is free again when the last array over it is garbage-collected (the
scheduler's copy, the caller's, and any view of either), when a result that was not used arrives
for it, or when its task is handed back unstarted. A slot whose producer vanished mid-task might
still be written to, so it is **quarantined** for good; with no slot free, tasks go over the
socket as for remote producers. A quarantined slot whose producer said its pid (local producers
do) is lent again once that process has exited (a ``pidfd`` says so, whatever pids are reused):
the slots of killed workers come back. Only producers on this machine can map the file (``/dev/shm``,
mode 0600, unlinked on close). Its name carries the user's uid and the file carries its owner's
lock (:mod:`zerofeed.common.leftovers`): after a SIGKILL, the next consumer of that user removes
it, whatever the pids.
"""

from __future__ import annotations

import heapq
import math
import os
import pathlib
import secrets
import select
import tempfile
import threading
import weakref

import numpy as np

from zerofeed.common.leftovers import OwnerLock, publish, remove_stale, setup_name
from zerofeed.common.slots import SlotFile

__all__ = ["SlotPool"]

_PREFIX = "zerofeed-slots-"


class SlotPool:
    """``count`` batch slots of ``slot_bytes`` in a fresh shared-memory file.

    Args:
        slot_bytes: the bytes of one full batch.
        count: how many slots (``max_queue_size`` plus a few the caller may still hold).
        directory: where the file goes; default ``/dev/shm`` (memory), else the temp folder.
    """

    def __init__(
        self, *, slot_bytes: int, count: int, directory: pathlib.Path | None = None
    ) -> None:
        folder = directory or _shared_memory_folder()
        mine = f"{_PREFIX}{os.getuid()}-"
        remove_stale(folder, mine + "*")  # left by this user's consumers that were killed
        made = setup_name(folder)
        self._file = SlotFile(made, slot_bytes=slot_bytes, count=count, create=True)
        try:
            self._owner = OwnerLock(made)
            self._file.path = publish(made, folder / f"{mine}{secrets.token_hex(8)}")
        except OSError:
            made.unlink(missing_ok=True)
            self._file.close()
            raise
        self._free = list(range(count))
        self._quarantined: set[int] = set()
        # quarantined slot -> pidfd of the process that may still write it
        self._owners: dict[int, int] = {}
        self._lock = (
            threading.RLock()
        )  # re-entrant: a batch may be garbage-collected (and free its slot) anywhere
        self._closed = False

    @property
    def path(self) -> pathlib.Path:
        """The slot file, for local producers to map (``zerofeed producer --slots``)."""
        return self._file.path

    @property
    def slot_bytes(self) -> int:
        return self._file.slot_bytes

    @property
    def count(self) -> int:
        return self._file.count

    @property
    def free(self) -> int:
        """Slots ready to lend now."""
        with self._lock:
            return len(self._free)

    @property
    def quarantined(self) -> int:
        """Slots never lent again because their producer vanished mid-task."""
        with self._lock:
            return len(self._quarantined)

    @property
    def resident_bytes(self) -> int:
        """Memory the slot file holds now: the slots written so far (0 once closed)."""
        try:
            return self._file.path.stat().st_blocks * 512
        except FileNotFoundError:
            return 0

    def take(self) -> int | None:
        """A free slot (the lowest, so that rarely needed slots stay untouched), or None."""
        with self._lock:
            return heapq.heappop(self._free) if self._free and not self._closed else None

    def release(self, slot: int) -> None:
        """``slot`` is no longer written or read: lend it again."""
        with self._lock:
            self._release_locked(slot)

    def _release_locked(self, slot: int) -> None:
        if slot not in self._quarantined and slot not in self._free:
            heapq.heappush(self._free, slot)

    def quarantine(self, slot: int, *, owner: int | None = None) -> None:
        """A producer that vanished may still write ``slot``: lend it again only once process
        ``owner`` has exited (:meth:`reclaim`), or never when the owner is not known."""
        pidfd = None
        if owner is not None:
            try:
                pidfd = os.pidfd_open(owner)
            except ProcessLookupError:  # already gone: nothing can write it any more
                self.release(slot)
                return
            except OSError:  # cannot be watched here (an old kernel): quarantined for good
                pidfd = None
        with self._lock:
            self._quarantined.add(slot)
            if pidfd is not None:
                self._owners[slot] = pidfd

    def reclaim(self) -> int:
        """Lend again the quarantined slots whose owner process has exited; how many."""
        if not self._owners:  # the common case, without the lock: a stale answer waits a turn
            return 0
        with self._lock:
            owners = dict(self._owners)
        done = [slot for slot, pidfd in owners.items() if _exited(pidfd)]
        with self._lock:
            for slot in done:
                os.close(self._owners.pop(slot))
                self._quarantined.discard(slot)
                self._release_locked(slot)
        return len(done)

    def images(
        self, slot: int, count: int, image_shape: tuple[int, ...], dtype: np.dtype
    ) -> np.ndarray:
        """The first ``count`` images in ``slot``, as an array that frees the slot when the
        last array over this memory is garbage-collected."""
        nbytes = count * math.prod(image_shape) * dtype.itemsize
        buffer = self._file.buffer(slot, nbytes)
        weakref.finalize(buffer, self.release, slot)
        return np.frombuffer(memoryview(buffer), dtype=dtype).reshape((count, *image_shape))

    def unlink(self) -> None:
        """Remove the file's name now: lock-free, safe in a signal handler (the memory goes
        when the last mapping does)."""
        self._file.path.unlink(missing_ok=True)

    def close(self) -> None:
        """Remove the file; arrays already handed out stay valid until they are dropped."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._file.path.unlink(missing_ok=True)
        self._owner.release()
        with self._lock:
            owners, self._owners = self._owners, {}
        for pidfd in owners.values():
            os.close(pidfd)
        self._file.close()


def _shared_memory_folder() -> pathlib.Path:
    shm = pathlib.Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else pathlib.Path(tempfile.gettempdir())


def _exited(pidfd: int) -> bool:
    return bool(select.select([pidfd], [], [], 0)[0])

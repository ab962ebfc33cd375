"""A file of equal batch-sized slots in shared memory, mapped by the consumer and local producers.

Local producers write a batch straight into a slot the consumer chose for the task, and the
consumer hands that memory to Keras: no socket copy, no fresh allocation per batch. Both sides
map the same file; :class:`SlotFile` is the mapping and the slot arithmetic, nothing more (which
slot is free is the consumer's business: :mod:`zerofeed.consumer.slots`).
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import pathlib

from zerofeed.common.errors import ConfigError

__all__ = ["SlotFile"]


class SlotFile:
    """``count`` slots of ``slot_bytes`` each in the file at ``path``, mapped read-write.

    Args:
        path: the file; a tmpfs such as ``/dev/shm`` keeps it in memory.
        slot_bytes: the size of one slot (one full batch); ``count`` slots fill the file.
        create: make the file (it must not exist) instead of opening the consumer's.

    Raises:
        ConfigError: the file cannot be created or opened, or is smaller than the slots.
    """

    def __init__(
        self, path: pathlib.Path, *, slot_bytes: int, count: int, create: bool = False
    ) -> None:
        if slot_bytes < 1 or count < 1:
            raise ConfigError(f"slots need a positive size and count, got {slot_bytes} x {count}")
        self.path = pathlib.Path(path)
        self.slot_bytes = slot_bytes
        self.count = count
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            action = "create" if create else "open"
            raise ConfigError(f"cannot {action} the slot file {self.path}: {exc}") from exc
        try:
            if create:  # reserve the memory now: a full /dev/shm would otherwise be a SIGBUS later
                _reserve(fd, slot_bytes * count, self.path)
            size = os.fstat(fd).st_size
            if size < slot_bytes * count:
                raise ConfigError(
                    f"the slot file {self.path} has {size} bytes; {count} slots of {slot_bytes} "
                    "need more (it belongs to another consumer, or was cut short)"
                )
            self._map = mmap.mmap(fd, slot_bytes * count)
        finally:
            os.close(fd)

    def buffer(self, slot: int, nbytes: int) -> ctypes.Array[ctypes.c_ubyte]:
        """The first ``nbytes`` of ``slot`` as a writable buffer that shares the mapping.

        The buffer keeps the mapping alive; ``numpy.frombuffer`` over it gives an array whose
        views all lead back to this one object (the consumer watches it to know when a slot is
        free again).
        """
        if not 0 <= slot < self.count or not 0 <= nbytes <= self.slot_bytes:
            raise ConfigError(
                f"slot {slot} / {nbytes} bytes is outside {self.count} slots of "
                f"{self.slot_bytes} bytes"
            )
        return (ctypes.c_ubyte * nbytes).from_buffer(self._map, slot * self.slot_bytes)

    def close(self) -> None:
        """Drop this process's mapping once nothing uses it (arrays handed out keep it alive)."""
        with contextlib.suppress(BufferError):  # batches still referenced keep the mapping alive
            self._map.close()


def _reserve(fd: int, size: int, path: pathlib.Path) -> None:
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise ConfigError(
            f"cannot reserve {size / 2**20:.0f} MiB for batch slots in {path.parent}: "
            f"{exc.strerror}; give it more room (in a container: --shm-size) or use "
            "FeedSequence(shared_memory=False)"
        ) from exc

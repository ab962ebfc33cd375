"""A bounded on-disk cache of remote reads, shared by every worker on a node.

Each entry is one read (a whole object, or one shard member's byte range): ``--cache-dir`` holds
``ab/abcdef....bin`` files named by a hash of the URL and range. Entries are never bigger than a
sample, so a cache smaller than a shard still works, and nothing waits for anything:

- **a write** goes to a temporary file, then ``os.replace`` makes it visible whole; two workers
  fetching the same object both write it, and the last rename wins (same bytes);
- **a read** opens the file; one evicted meanwhile is a miss (read from the store again), and
  a file already open stays readable after another worker unlinks it;
- **eviction**: each worker counts the bytes it wrote since it last looked; past a twentieth of
  the budget it takes the sweep lock *without waiting* (``flock(LOCK_NB)``; another worker
  sweeping is as good), lists the cache and deletes the least recently used entries until the
  cache is at 90 % of its budget. Reads refresh an entry's time (``os.utime``).

The cache can therefore exceed its budget by up to a twentieth per worker between sweeps; a read
bigger than a twentieth of the budget is not kept. Half-written files of a worker killed mid-write
are removed by the next worker to start.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path

__all__ = ["DiskCache"]

log = logging.getLogger("zerofeed.producer")

_SWEEP_EVERY = 20  # sweep once a worker has written 1/20 of the budget
_SWEEP_TO = 0.9
_STALE_WRITE_SECONDS = 3600.0


class DiskCache:
    """Entries keyed by text (a URL and byte range), at most about ``max_bytes`` in all."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.folder = folder
        self.max_bytes = max_bytes
        self._written = 0
        folder.mkdir(parents=True, exist_ok=True)
        self._tmp = folder / "tmp"
        self._tmp.mkdir(exist_ok=True)
        self._remove_stale_writes()

    def _remove_stale_writes(self) -> None:
        """Half-written entries of workers that were killed mid-write (older than an hour: a
        live worker's write takes milliseconds)."""
        cutoff = time.time() - _STALE_WRITE_SECONDS
        for entry in os.scandir(self._tmp):
            with contextlib.suppress(FileNotFoundError):
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)

    def get(self, key: str) -> bytes | None:
        """The cached bytes for ``key``, or None."""
        path = self._path(key)
        try:
            with open(path, "rb") as entry:
                data = entry.read()
        except OSError:  # evicted meanwhile, or unreadable: read from the store again
            return None
        with contextlib.suppress(OSError):  # another user's entry keeps its time
            os.utime(path)
        return data

    def put(self, key: str, data: bytes) -> None:
        """Keep ``data`` for ``key`` (skipped when it alone exceeds the budget)."""
        if len(data) > self.max_bytes // _SWEEP_EVERY:
            return
        path = self._path(key)
        temporary = None
        try:
            path.parent.mkdir(exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self._tmp)
            with os.fdopen(handle, "wb") as out:
                os.fchmod(out.fileno(), 0o644)
                out.write(data)
            os.replace(temporary, path)
        except OSError as exc:  # a full disk, say: the sample was read all the same
            if temporary is not None:
                Path(temporary).unlink(missing_ok=True)
            log.warning("cannot write to the cache %s: %s", self.folder, exc)
            return
        self._written += len(data)
        if self._written >= self.max_bytes // _SWEEP_EVERY:
            self._written = 0
            self.sweep()

    def sweep(self) -> int:
        """Delete least recently used entries down to 90 % of the budget, unless another worker
        is sweeping; returns the bytes the cache holds afterwards (-1 if skipped)."""
        try:
            return self._sweep()
        except OSError as exc:
            log.warning("cannot sweep the cache %s: %s", self.folder, exc)
            return -1

    def _sweep(self) -> int:
        with open(self.folder / ".sweep.lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return -1
            entries = sorted(self._entries())
            total = sum(size for _, size, _ in entries)
            target = int(self.max_bytes * _SWEEP_TO)
            for _, size, path in entries:
                if total <= target:
                    break
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                total -= size
            return total

    def size(self) -> int:
        """Bytes held now."""
        return sum(size for _, size, _ in self._entries())

    def _entries(self) -> list[tuple[float, int, str]]:
        found = []
        for shelf in os.scandir(self.folder):
            if not shelf.is_dir() or shelf.name == "tmp":
                continue
            for entry in os.scandir(shelf.path):
                try:
                    info = entry.stat()
                except FileNotFoundError:
                    continue
                found.append((info.st_mtime, info.st_size, entry.path))
        return found

    def _path(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
        return self.folder / digest[:2] / f"{digest}.bin"

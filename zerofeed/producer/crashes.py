"""A sample that crashes a worker process is skipped from then on, instead of crashing them all.

Every per-sample exception is already a bad sample (:mod:`zerofeed.producer.batch`); what is left
is a sample that ends the process itself: a segfault in native decoding code, an out-of-memory
kill, an ``os._exit`` in a plugin. Re-issued to the next worker it would end that one too, and a
producer whose workers keep dying stops. So a worker notes the sample it is making in a small file
of its own (its :class:`Breadcrumb`: a few bytes stored through a shared mapping of the file, into
the page cache, which outlives the process); when a worker dies abnormally, its supervisor reads it
and adds the sample to the producer's :class:`PoisonList`. Workers started after that report such a
sample as a bad sample of kind ``"crash"`` without opening it: a poison sample costs each worker at
most one crash, and the consumer's re-issued batch arrives with that one sample skipped. A SIGKILL
is blamed on the sample only when the kernel's out-of-memory killer fired meanwhile
(:func:`oom_kills`): an operator's or a chaos test's kill is not the sample's fault.
"""

from __future__ import annotations

import mmap
import os
import pathlib

__all__ = ["Breadcrumb", "PoisonList", "last_sample", "oom_kills"]

_LENGTH = 4
_NO_SAMPLE = bytes(_LENGTH)  # the length that names no sample


class Breadcrumb:
    """The sample a worker is making now, in the file at ``path`` (this worker's own).

    The file is written through a shared mapping of it: its pages are the page cache's, so what
    was written outlives the process as a ``write()`` would, without a system call per sample.
    """

    def __init__(self, path: pathlib.Path) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self._map, self._capacity = _map_file(self._fd, mmap.PAGESIZE)
        except BaseException:
            os.close(self._fd)
            raise

    def begin(self, sample: str) -> None:
        """Note ``sample`` as the one being made."""
        data = os.fsencode(sample)
        end = _LENGTH + len(data)
        if end > self._capacity:
            self._grow(end)
        # no length while the name changes: a death meanwhile leaves the file naming no sample,
        # never a mix of this name and the last one
        self._map[:_LENGTH] = _NO_SAMPLE
        self._map[_LENGTH:end] = data
        self._map[:_LENGTH] = len(data).to_bytes(_LENGTH, "little")

    def end(self) -> None:
        """The sample is done (or reported bad): nothing is being made."""
        self._map[:_LENGTH] = _NO_SAMPLE

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

    def _grow(self, size: int) -> None:
        mapping, capacity = _map_file(self._fd, max(size, 2 * self._capacity))
        self._map.close()
        self._map, self._capacity = mapping, capacity


def _map_file(fd: int, size: int) -> tuple[mmap.mmap, int]:
    """A shared mapping of the file ``fd``, made at least ``size`` bytes long (whole pages): what
    was written stays, the rest reads as zeros. Its blocks are allocated now, so that on a file
    system that writes in place (not a copy-on-write one) a full disk is an ``OSError`` here, not a
    ``SIGBUS`` at a later store."""
    capacity = -(-size // mmap.PAGESIZE) * mmap.PAGESIZE
    os.posix_fallocate(fd, 0, capacity)
    return mmap.mmap(fd, capacity), capacity


def last_sample(path: pathlib.Path) -> str | None:
    """The sample a dead worker's breadcrumb at ``path`` names, if it was making one."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    length = int.from_bytes(data[:_LENGTH], "little")
    if not length or len(data) < _LENGTH + length:
        return None
    return os.fsdecode(data[_LENGTH : _LENGTH + length])


class PoisonList:
    """The samples that crashed one of this producer's workers, and how (a file of lines)."""

    def __init__(self, path: pathlib.Path) -> None:
        self._path = path

    def add(self, sample: str, reason: str) -> None:
        """Record that ``sample`` crashed a worker (the supervisor, after a worker's death)."""
        line = f"{os.fsencode(sample).hex()}\t{reason.replace(chr(10), ' ')}\n"
        with self._path.open("a", encoding="utf-8") as out:
            out.write(line)

    def load(self) -> dict[str, str]:
        """Every sample recorded so far, with its reason (a worker, at its start)."""
        try:
            lines = self._path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return {}
        poisoned = {}
        for line in lines:
            hexed, _, reason = line.partition("\t")
            poisoned[os.fsdecode(bytes.fromhex(hexed))] = reason
        return poisoned


def oom_kills() -> int | None:
    """How many processes the out-of-memory killer has ended in this process's memory cgroup
    (cgroup v2 ``memory.events`` or v1 ``memory.oom_control``); None where it cannot be read."""
    try:
        lines = pathlib.Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    candidates = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if controllers == "":
            candidates.append(pathlib.Path("/sys/fs/cgroup", relative, "memory.events"))
        elif "memory" in controllers.split(","):
            candidates.append(pathlib.Path("/sys/fs/cgroup/memory", relative, "memory.oom_control"))
    for candidate in candidates:
        try:
            text = candidate.read_text()
        except OSError:
            continue
        for entry in text.splitlines():
            name, _, value = entry.partition(" ")
            if name == "oom_kill" and value.strip().isdigit():
                return int(value)
    return None

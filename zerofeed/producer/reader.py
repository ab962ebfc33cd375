"""The bytes of a sample, wherever its manifest path says it lives.

A path is a local file (resolved and confined by :class:`~zerofeed.producer.paths.SampleLocator`),
an object URL read through :class:`~zerofeed.common.storage.ObjectStores` (only under the
producer's ``--allow`` entries), or a member of a tar shard, local or remote
(``CONTAINER.tar#OFFSET+SIZE``: one ``pread`` or one ranged GET). Remote reads go through the
node's :class:`~zerofeed.producer.cache.DiskCache` when one is configured. See
:mod:`zerofeed.common.locations` for the forms a path takes.
"""

from __future__ import annotations

import os
import pathlib
import stat

from zerofeed.common.errors import BadSampleError
from zerofeed.common.locations import AllowList, is_url, parse_member
from zerofeed.common.storage import ObjectStores, short_read
from zerofeed.producer.cache import DiskCache
from zerofeed.producer.paths import SampleLocator

__all__ = ["SampleReader", "read_file"]


class SampleReader:
    """Reads samples for one worker process; owns its store clients."""

    def __init__(
        self,
        *,
        locator: SampleLocator,
        allow: AllowList | None = None,
        stores: ObjectStores | None = None,
        cache: DiskCache | None = None,
    ) -> None:
        self._locator = locator
        self._allow = allow or AllowList()
        self._stores = stores
        self._cache = cache
        self.remote_reads = 0

    @property
    def allow(self) -> AllowList:
        """The object URLs this reader may read."""
        return self._allow

    def read(self, path: str) -> bytes:
        """The encoded image that ``path`` names.

        Raises:
            BadSampleError: missing, not permitted (``permission``, ``outside_root``,
                ``not_allowed``), unreadable, ``truncated``, or a store that is
                ``unavailable``; the reason says where and how to fix it.
        """
        member = parse_member(path)
        if member is None:
            if is_url(path):
                return self._remote(path, path, None)
            fd = self._open(path, path)
            try:
                return _read_all(fd, path)
            finally:
                os.close(fd)
        if is_url(member.container):
            return self._remote(path, member.container, (member.offset, member.size))
        fd = self._open(member.container, path)
        try:
            return _read_at(fd, member.offset, member.size, path, member.container)
        finally:
            os.close(fd)

    def _open(self, path: str, name: str) -> int:
        """``path`` opened through the locator (the data-root check and the open in one step), a
        descriptor the caller closes; ``name`` is what errors name."""
        try:
            return self._locator.open(path)
        except OSError as exc:
            raise _file_error(name, exc) from exc

    def _remote(self, path: str, url: str, byte_range: tuple[int, int] | None) -> bytes:
        if not self._allow.permits(url):
            raise BadSampleError(path, "not_allowed", self._allow.refusal(url))
        if self._cache is not None:
            cached = self._cache.get(path)
            if cached is not None and (byte_range is None or len(cached) == byte_range[1]):
                return cached
        if self._stores is None:
            self._stores = ObjectStores()
        self.remote_reads += 1
        try:
            data = self._stores.read(url, byte_range)
        except BadSampleError as exc:
            if exc.path == path:
                raise
            raise BadSampleError(path, exc.kind, exc.reason) from exc
        if self._cache is not None:
            self._cache.put(path, data)
        return data


def read_file(path: pathlib.Path) -> bytes:
    """The whole file, in one read of its size (no buffered file object)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise _file_error(str(path), exc) from exc
    try:
        return _read_all(fd, str(path))
    finally:
        os.close(fd)


def _read_all(fd: int, name: str) -> bytes:
    """The rest of the open file ``fd``, in one read of its size; ``name`` is what errors name."""
    try:
        status = os.fstat(fd)
        chunks = [os.read(fd, status.st_size + 1)]
        if stat.S_ISREG(status.st_mode) and len(chunks[0]) == status.st_size:
            return chunks[0]  # the whole file, as big as it was: no second read to see the end
        while chunks[-1]:  # more when the size was unknown (a pipe) or the file grew
            chunks.append(os.read(fd, 1 << 20))
    except OSError as exc:
        raise _file_error(name, exc) from exc
    return chunks[0] if len(chunks) == 2 else b"".join(chunks)


def _read_at(fd: int, offset: int, size: int, name: str, container: str) -> bytes:
    """``size`` bytes at ``offset`` of the open file ``fd`` (a shard, ``container``, holding the
    member ``name``). A file that ends early is a bad sample of kind ``truncated``."""
    try:
        data = os.pread(fd, size, offset)
    except OSError as exc:
        raise _file_error(name, exc) from exc
    if len(data) != size:
        raise short_read(name, container, offset, size, len(data))
    return data


def _file_error(name: str, exc: OSError) -> BadSampleError:
    if isinstance(exc, FileNotFoundError):
        return BadSampleError(name, "missing", f"no such file ({exc.strerror})")
    if isinstance(exc, PermissionError):
        return BadSampleError(
            name,
            "permission",
            f"permission denied ({exc.strerror}); make it readable by the producer's user",
        )
    return BadSampleError(name, "unreadable", f"cannot read the file ({type(exc).__name__}: {exc})")

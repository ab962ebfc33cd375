"""Where a sample path named by the consumer lives on this producer's disk."""

from __future__ import annotations

import os
from pathlib import Path

from zerofeed.common.errors import BadSampleError

__all__ = ["SampleLocator"]


class SampleLocator:
    """Resolves manifest paths against an optional data root.

    With a root, relative paths resolve inside it and any path that resolves outside it (``..``,
    an absolute path elsewhere, a symlink pointing out) is refused without being read. Without a
    root, absolute paths are used as they are and relative ones resolve against the working folder.
    """

    def __init__(self, data_root: Path | None) -> None:
        self._root = Path(os.path.realpath(data_root)) if data_root is not None else None

    def locate(self, path: str) -> Path:
        """The file to read for ``path``; raises :class:`BadSampleError` (kind ``outside_root``)."""
        if self._root is None:
            return Path(path)
        resolved = Path(os.path.realpath(self._root / path))
        if not resolved.is_relative_to(self._root):
            raise BadSampleError(
                path,
                "outside_root",
                f"resolves to {str(resolved)!r}, outside the producer's data root "
                f"{str(self._root)!r}",
            )
        return resolved

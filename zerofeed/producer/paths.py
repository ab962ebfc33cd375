"""Where a sample path named by the consumer lives on this producer's disk."""

from __future__ import annotations

import os
from pathlib import Path

from zerofeed.common.errors import BadSampleError

__all__ = ["SampleLocator"]

_MAX_FOLDERS = 4096


class SampleLocator:
    """Resolves manifest paths against an optional data root.

    With a root, relative paths resolve inside it, absolute paths are taken as they are, and any
    path whose real location (symlinks followed) is outside the root (``..``, an absolute path
    elsewhere, a symlink pointing out) is refused without being read; the error names that
    resolved location and the root. Without a root, absolute paths are used as they are and
    relative ones resolve against the working folder.
    """

    def __init__(self, data_root: Path | None) -> None:
        self._root = os.path.realpath(data_root) if data_root is not None else None
        # what every real path inside the root starts with ("/" itself when the root is "/")
        self._inside = os.path.join(self._root, "") if self._root is not None else ""
        self._folders: dict[str, str] = {}  # folder as named -> its real path

    def locate(self, path: str) -> Path:
        """The file to read for ``path``; raises :class:`BadSampleError` (kind ``outside_root``,
        or ``unreadable`` for a path no file can have)."""
        if "\0" in path:
            raise BadSampleError(
                path, "unreadable", "the path contains a NUL byte, which no file name can hold"
            )
        if self._root is None:
            return Path(path)
        resolved = self._resolve(os.path.join(self._root, path))
        if resolved != self._root and not resolved.startswith(self._inside):
            raise BadSampleError(
                path,
                "outside_root",
                f"resolves to {str(resolved)!r}, outside the producer's data root "
                f"{str(self._root)!r}; start this producer with a --data-root that contains "
                "it, or keep the manifest's paths inside the data root",
            )
        return Path(resolved)

    def _resolve(self, path: str) -> str:
        """``os.path.realpath(path)`` (absolute, normalised: a plain prefix test then says whether
        it lies inside the root), remembering each folder's real path: a data set's files
        share a few folders, and resolving one costs a system call per path component. Folders
        are taken to stay put while the producer runs; the file itself is checked every time."""
        folder, name = os.path.split(path)
        real_folder = self._folders.get(folder)
        if real_folder is None:
            if len(self._folders) >= _MAX_FOLDERS:
                self._folders.clear()
            real_folder = self._folders[folder] = os.path.realpath(folder)
        candidate = os.path.join(real_folder, name)
        if name in ("", ".", "..") or os.path.islink(candidate):
            return os.path.realpath(candidate)
        return candidate

"""Where a sample path named by the consumer lives on this producer's disk."""

from __future__ import annotations

import errno
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

    def open(self, path: str) -> int:
        """The file for ``path``, opened for reading: a file descriptor the caller closes.

        Checked as :meth:`locate` checks it, but for the file itself the check and the open are
        one step: a plain file inside the root is opened with ``O_NOFOLLOW``, so a symlink put in
        its place meanwhile is refused by the kernel, not followed; a symlink is resolved, checked
        and its target opened the same way. Raises :class:`BadSampleError` as :meth:`locate` does,
        and ``OSError`` for a file that cannot be opened.
        """
        self._refuse_nul(path)
        if self._root is None:
            return os.open(path, os.O_RDONLY)
        if not hasattr(os, "O_NOFOLLOW"):  # Windows: the check, then the open
            return os.open(self.locate(path), os.O_RDONLY)
        nofollow = os.O_RDONLY | os.O_NOFOLLOW
        candidate, name = self._in_real_folder(os.path.join(self._root, path))
        if name not in ("", ".", "..") and candidate.startswith(self._inside):
            try:
                return os.open(candidate, nofollow)
            except OSError as exc:
                if exc.errno != errno.ELOOP:  # ELOOP: the file is a symlink
                    raise
        return os.open(self.locate(path), nofollow)

    def locate(self, path: str) -> Path:
        """The file to read for ``path``; raises :class:`BadSampleError` (kind ``outside_root``,
        or ``unreadable`` for a path no file can have)."""
        self._refuse_nul(path)
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
        it lies inside the root), with the folder's real path remembered (:meth:`_in_real_folder`);
        the file itself is checked every time."""
        candidate, name = self._in_real_folder(path)
        if name in ("", ".", "..") or os.path.islink(candidate):
            return os.path.realpath(candidate)
        return candidate

    def _in_real_folder(self, path: str) -> tuple[str, str]:
        """``path``'s last component in its folder's real path, and that component.

        Folders' real paths are remembered: a data set's files share a few folders, and resolving
        one costs a system call per path component. Folders are taken to stay put while the
        producer runs."""
        folder, name = os.path.split(path)
        real_folder = self._folders.get(folder)
        if real_folder is None:
            if len(self._folders) >= _MAX_FOLDERS:
                self._folders.clear()
            real_folder = self._folders[folder] = os.path.realpath(folder)
        return os.path.join(real_folder, name), name

    @staticmethod
    def _refuse_nul(path: str) -> None:
        if "\0" in path:
            raise BadSampleError(
                path, "unreadable", "the path contains a NUL byte, which no file name can hold"
            )

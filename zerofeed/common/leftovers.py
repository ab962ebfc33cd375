"""What a zerofeed process leaves on the machine, and how a later start tells whose it is.

A consumer owns its shared-memory slot file (``/dev/shm``), the private folder of its ipc endpoint
and its local producers' key folder (``$TMPDIR``); a producer owns its working folder (its poison
list). Each carries an exclusive ``flock`` held by
its owner for as long as it lives: the kernel drops the lock when the process dies, however it
dies (SIGKILL included). A pid would not do: in a container the trainer is often PID 1 both
before and after a restart, and a pid can be reused. A later consumer of the same user removes
what no process holds any more; other users' files are left alone (``/dev/shm`` is sticky), so
users of one machine cannot block each other. Each is made under a hidden name, locked, and only
then renamed into place (:func:`publish`): an entry under its final name is always held while its
owner lives, so a later start may remove any unheld one at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
import secrets
import shutil
import tempfile

__all__ = [
    "LOCK_NAME",
    "SETUP_PREFIX",
    "OwnerLock",
    "held",
    "owned_folder",
    "publish",
    "remove_stale",
    "setup_name",
]

LOCK_NAME = "owner.lock"
SETUP_PREFIX = ".zerofeed-setup-"
"""Entries are made under this prefix, then renamed into place once locked."""


class OwnerLock:
    """An exclusive ``flock`` on ``path`` (created if missing, mode 0600), held until
    :meth:`release` or the process's end. The descriptor is not inherited by children."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            raise

    def release(self) -> None:
        """Drop the lock (idempotent); the file itself is the owner's to remove."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def setup_name(folder: pathlib.Path) -> pathlib.Path:
    """A fresh hidden name in ``folder`` to make an entry under before :func:`publish`."""
    return folder / f"{SETUP_PREFIX}{os.getuid()}-{secrets.token_hex(8)}"


def publish(made: pathlib.Path, final: pathlib.Path) -> pathlib.Path:
    """Rename ``made`` (locked by now) to ``final``, a fresh random name; returns ``final``."""
    os.rename(made, final)
    return final


def owned_folder(kind: str) -> tuple[pathlib.Path, OwnerLock]:
    """A fresh 0700 folder ``zerofeed-<kind>-<uid>-<random>`` in the temp folder, carrying its
    owner's lock; first removes this user's folders of that kind whose owner is gone. The caller
    removes the folder and releases the lock when done."""
    temp = pathlib.Path(tempfile.gettempdir())
    mine = f"zerofeed-{kind}-{os.getuid()}-"
    remove_stale(temp, mine + "*", lock_inside=True)
    made = pathlib.Path(tempfile.mkdtemp(prefix=setup_name(temp).name, dir=temp))
    try:
        owner = OwnerLock(made / LOCK_NAME)
        return publish(made, temp / f"{mine}{secrets.token_hex(8)}"), owner
    except OSError:
        shutil.rmtree(made, ignore_errors=True)
        raise


def held(path: pathlib.Path) -> bool:
    """Whether a live process holds ``path``'s owner lock (an unreadable file counts as held)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def remove_stale(folder: pathlib.Path, pattern: str, *, lock_inside: bool = False) -> int:
    """Remove this user's entries of ``folder`` matching ``pattern`` whose owner is gone.

    ``lock_inside``: the entries are folders whose lock is their :data:`LOCK_NAME` file (else
    each entry is a file locked itself). Returns how many were removed.
    """
    removed = 0
    uid = os.getuid()
    for path in folder.glob(pattern):
        lock = path / LOCK_NAME if lock_inside else path
        try:
            info = path.lstat()
        except OSError:
            continue
        if info.st_uid != uid:
            continue
        if not lock.exists() or held(lock):
            continue
        with contextlib.suppress(OSError):
            if lock_inside:
                shutil.rmtree(path)
            else:
                path.unlink()
            removed += 1
    return removed

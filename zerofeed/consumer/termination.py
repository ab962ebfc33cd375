"""SIGTERM as a clean stop: what a feed owns outside its process goes with it.

``docker stop``, Kubernetes and Slurm end a trainer with SIGTERM, whose default action ends the
process at once: no ``close()``, no ``finally``. While a feed runs, :class:`TerminationCleanup`
puts a handler in front of that default. The handler does only what is safe at any point of the
program, whatever lock the interrupted code holds: it signals the local producers' process group,
removes the slot file and the private folder (no lock, no thread join), and then lets the signal
take its course (the previous handler, or the default action: the process still ends by SIGTERM,
so exit codes and supervisors see what they expect).

A handler the application installed itself is left in place (call ``feed.close()`` from it);
the handler is installed only from the main thread, where Python runs signal handlers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["TerminationCleanup"]


class TerminationCleanup:
    """Runs ``cleanup`` on SIGTERM, then what SIGTERM would have done without it."""

    def __init__(self, cleanup: Callable[[], None]) -> None:
        self._cleanup = cleanup
        self._previous: Any = None
        self._installed = False

    def install(self) -> bool:
        """Install the handler; False (nothing done) off the main thread or when the
        application has a SIGTERM handler of its own."""
        if threading.current_thread() is not threading.main_thread():
            return False
        previous = signal.getsignal(signal.SIGTERM)
        ours = isinstance(getattr(previous, "__self__", None), TerminationCleanup)
        if previous is not signal.SIG_DFL and not ours:
            return False
        self._previous = previous
        signal.signal(signal.SIGTERM, self._handle)
        self._installed = True
        return True

    def uninstall(self) -> None:
        """Put the previous handler back, if this one is still the installed one."""
        if not self._installed:
            return
        self._installed = False
        if threading.current_thread() is not threading.main_thread():
            return  # a feed closed by the garbage collector elsewhere: the handler stays harmless
        if signal.getsignal(signal.SIGTERM) == self._handle:
            signal.signal(signal.SIGTERM, self._previous)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._installed:
            with contextlib.suppress(Exception):  # whatever fails, the signal goes on
                self._cleanup()
        previous = self._previous
        if callable(previous):
            previous(signum, frame)
            return
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        # Still here: this is PID 1 of its namespace (a container's trainer), to which the
        # kernel does not apply a default action. End as a shell reports a SIGTERM.
        os._exit(128 + signum)

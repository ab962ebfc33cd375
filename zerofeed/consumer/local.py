"""Producers that a :class:`~zerofeed.consumer.FeedSequence` starts and owns on this machine.

They run as one ``python -m zerofeed.producer`` process (a supervisor with N spawned workers) in its
own process group, so a Ctrl-C in the terminal reaches only the trainer, which then stops them. The
group stays in the trainer's session: where the kernel shares CPU between sessions (Linux's
autogroup, on by default on Debian), the producers then compete for cores as the trainer's own
threads do, not as a session of their own (which got them one core of two against a busy loop in
the trainer's session). They also
stop by themselves when the trainer dies: their standard input is a pipe from the trainer, and its
end of file means "the parent is gone".

Their log (standard error) comes through a pipe too: a thread copies it to this process's standard
error and keeps the last lines, so that when the producer process exits before :meth:`close`
(a plugin that does not import, workers crashing at start, a kill) ``on_exit`` is told at once,
with the child's own words.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable

from zerofeed.common.cores import usable_cores
from zerofeed.common.producer_config import ProducerConfig

__all__ = ["LocalProducers", "default_worker_count"]

log = logging.getLogger("zerofeed.consumer")

_TAIL_LINES = 12


def default_worker_count() -> int:
    """Worker processes for ``local_producers="auto"``: one per CPU this process may use."""
    return usable_cores()


class LocalProducers:
    """A producer process tree on this machine, started now and stopped by :meth:`close`."""

    def __init__(
        self, config: ProducerConfig, *, on_exit: Callable[[str], None] | None = None
    ) -> None:
        """Start ``zerofeed producer`` with ``config`` (its command line is
        :meth:`ProducerConfig.to_argv`, with ``exit_with_parent`` always on: the trainer's end of
        the child's standard input is its lifeline). ``on_exit`` is called (on a thread of this
        object's) with a message when the producers exit before :meth:`close`."""
        config = dataclasses.replace(config, exit_with_parent=True)
        self._on_exit = on_exit
        self._closing = threading.Event()
        self._tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "zerofeed.producer", *config.to_argv()],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_child_environment(),
            process_group=0,
        )
        self.pid = self._process.pid
        self._reader = threading.Thread(
            target=self._copy_log, name="zerofeed-local-producers-log", daemon=True
        )
        self._reader.start()
        self._watcher = threading.Thread(
            target=self._watch, name="zerofeed-local-producers", daemon=True
        )
        self._watcher.start()

    @property
    def last_log_lines(self) -> tuple[str, ...]:
        """The last lines the producer process logged."""
        return tuple(self._tail)

    def _copy_log(self) -> None:
        """Copy the child's log to ours, keeping the last lines."""
        stream = self._process.stderr
        if stream is None:
            return
        with stream:
            for raw in stream:
                line = raw.decode("utf-8", "replace")
                self._tail.append(line.rstrip("\n"))
                with contextlib.suppress(OSError, ValueError):
                    sys.stderr.write(line)

    def _watch(self) -> None:
        """Wait for the child to exit; if that was not asked for, tell ``on_exit`` why."""
        code = self._process.wait()
        if self._closing.is_set() or self._on_exit is None:
            return
        self._reader.join(timeout=1.0)  # its last words (workers may still hold the pipe)
        how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
        lines = "\n".join(f"    {line}" for line in self._tail) or "    (it logged nothing)"
        self._on_exit(
            f"the local producer process (pid {self.pid}) {how} before the feed was closed; "
            f"its last log lines:\n{lines}"
        )

    def close(self, *, grace: float = 15.0) -> None:
        """Stop the producers: close their stdin (graceful), then SIGTERM, then SIGKILL the group."""
        self._closing.set()
        process = self._process
        if process.poll() is None and process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log.warning("local producers did not stop within %.0f s; terminating them", grace)
            self._signal_group(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                process.wait()
        self._signal_group(signal.SIGKILL)  # any worker left behind by a crashed supervisor
        if process.stdin is not None and not process.stdin.closed:
            process.stdin.close()
        self._watcher.join(timeout=5)
        self._reader.join(timeout=5)

    def terminate_group(self, *, wait: float = 0.0) -> None:
        """SIGTERM to the producers' process group, then up to ``wait`` seconds for their
        supervisor to end (its graceful stop cleans up after itself): no lock taken, safe in a
        signal handler (the exit watcher thread reaps it meanwhile)."""
        self._signal_group(signal.SIGTERM)
        deadline = time.monotonic() + wait
        while self._process.returncode is None and time.monotonic() < deadline:
            time.sleep(0.02)

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _child_environment() -> dict[str, str]:
    """This environment, with this interpreter's import path, so that plugins import alike, and
    without ``ZEROFEED_*`` variables: the command line alone says how local producers work."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ZEROFEED_")}
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    environment["PYTHONPATH"] = os.pathsep.join(paths)
    return environment

"""The producer process: starts workers (spawn), restarts the ones that die, stops them all.

Signals: SIGTERM and SIGINT ask for a graceful stop (workers finish the batch in hand, return
queued tasks with ``BYE`` and exit); after ``grace`` seconds stragglers are killed. Workers ignore SIGINT, so
a Ctrl-C in a terminal reaches them only through the supervisor. With ``exit_with_parent`` the
supervisor also stops when its standard input closes, i.e. when the process that started it is gone.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from zerofeed.producer.config import ProducerConfig

__all__ = ["Supervisor", "worker_main"]

log = logging.getLogger("zerofeed.producer")

_RESTART_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)


def worker_main(
    config: ProducerConfig, name: str, stop: Any, log_level: int, index: int = 0
) -> None:
    """Entry point of a spawned worker process."""
    # Imported here so that the supervisor itself stays light.
    from PIL import Image

    from zerofeed.producer.batch import BatchMaker
    from zerofeed.producer.paths import SampleLocator
    from zerofeed.producer.plugins import load_plugins
    from zerofeed.producer.worker import Worker

    logging.basicConfig(level=log_level, format=_LOG_FORMAT, stream=sys.stderr)
    Image.MAX_IMAGE_PIXELS = config.max_pixels  # Pillow's process-wide decompression-bomb limit
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    terminated = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: terminated.set())
    report_requested = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: report_requested.set())
    transforms = load_plugins(config.plugins)
    parent = multiprocessing.parent_process()
    worker = Worker(
        config,
        name=name,
        maker=BatchMaker(
            locator=SampleLocator(config.data_root),
            transforms=transforms,
            sample_timeout=config.sample_timeout or None,
        ),
        transforms=tuple(sorted(transforms)),
        should_stop=lambda: terminated.is_set() or stop.is_set(),
        parent_sentinel=parent.sentinel if parent is not None else None,
        report_requested=report_requested,
    )
    metrics = None
    if config.metrics_port is not None:
        from zerofeed.common.metrics import MetricsServer

        metrics = MetricsServer(config.metrics_port + index, worker.report.metrics)
    try:
        worker.run()
    finally:
        if metrics is not None:
            metrics.close()


_LOG_FORMAT = "%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s"


@dataclass
class _Slot:
    name: str
    process: BaseProcess
    restarts: int = 0
    started: float = field(default_factory=time.monotonic)


class Supervisor:
    """Runs ``config.workers`` worker processes until asked to stop."""

    def __init__(self, config: ProducerConfig, *, grace: float = 10.0) -> None:
        self._config = config
        self._grace = grace
        self._context = multiprocessing.get_context("spawn")
        self._stop = self._context.Event()
        self._stopping = threading.Event()
        prefix = config.name or f"{socket.gethostname()}:{os.getpid()}"
        self._names = [f"{prefix}/w{i}" for i in range(config.workers)]

    def run(self) -> int:
        """Start the workers and supervise them; returns the process exit code."""
        self._install_signal_handlers()
        if self._config.exit_with_parent:
            threading.Thread(target=self._watch_stdin, name="parent-watch", daemon=True).start()
        log.info(
            "producer starting %d worker(s) for %s", self._config.workers, self._config.endpoint
        )
        slots = [self._start(name) for name in self._names]
        try:
            while not self._stopping.is_set() and slots:
                sentinels = [slot.process.sentinel for slot in slots]
                multiprocessing.connection.wait(sentinels, timeout=0.5)
                slots = [kept for slot in slots if (kept := self._check(slot)) is not None]
        finally:
            self._shutdown(slots)
        return 0

    def stop(self) -> None:
        """Ask for a graceful stop (thread-safe; used by signal handlers and tests)."""
        self._stopping.set()

    def _install_signal_handlers(self) -> None:
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("producer got %s; stopping workers", signal.Signals(signum).name)
            self.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGUSR1, self._forward_report_request)

    def _forward_report_request(self, _signum: int, _frame: FrameType | None) -> None:
        """SIGUSR1 to the producer: every worker logs its report now."""
        for pid in multiprocessing.active_children():
            if pid.pid is not None:
                os.kill(pid.pid, signal.SIGUSR1)

    def _watch_stdin(self) -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        log.info("producer's parent is gone; stopping")
        self.stop()

    def _start(self, name: str, restarts: int = 0) -> _Slot:
        process = self._context.Process(
            target=worker_main,
            args=(self._config, name, self._stop, log.getEffectiveLevel(), self._names.index(name)),
            name=name,
            daemon=True,
        )
        process.start()
        return _Slot(name=name, process=process, restarts=restarts)

    def _check(self, slot: _Slot) -> _Slot | None:
        """The slot as it should be now: unchanged while its worker runs, None once the worker
        ended on purpose (its consumer gone, ``--exit-with-consumer``: then all stop), else a
        restarted one."""
        if slot.process.is_alive() or self._stopping.is_set():
            return slot
        if self._config.exit_with_consumer and slot.process.exitcode == 0:
            # The consumer this producer served is gone: the other workers stop too, including
            # one that started too late to meet it (it would wait for the next consumer).
            log.info("worker %s saw its consumer go; stopping the producer", slot.name)
            self.stop()
            return None
        uptime = time.monotonic() - slot.started
        restarts = 0 if uptime > 60 else slot.restarts + 1
        delay = _RESTART_BACKOFF[min(restarts, len(_RESTART_BACKOFF) - 1)]
        log.error(
            "worker %s exited with code %s after %.1f s; restarting in %.1f s",
            slot.name,
            slot.process.exitcode,
            uptime,
            delay,
        )
        if self._stopping.wait(delay):
            return slot
        return self._start(slot.name, restarts)

    def _shutdown(self, slots: list[_Slot]) -> None:
        self._stop.set()
        deadline = time.monotonic() + self._grace
        for slot in slots:
            slot.process.join(max(0.0, deadline - time.monotonic()))
        for slot in slots:
            if slot.process.is_alive():
                log.warning(
                    "worker %s did not stop within %.0f s; killing it", slot.name, self._grace
                )
                slot.process.kill()
                slot.process.join()
        log.info("producer stopped")

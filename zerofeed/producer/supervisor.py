"""The producer process: starts workers (spawn), restarts the ones that die, stops them all.

Signals: SIGTERM and SIGINT ask for a graceful stop (workers finish the batch in hand, return
queued tasks with ``BYE`` and exit); after ``grace`` seconds stragglers are killed. Workers ignore SIGINT, so
a Ctrl-C in a terminal reaches them only through the supervisor. With ``exit_with_parent`` the
supervisor also stops when its standard input closes, i.e. when the process that started it is gone.

A producer that cannot work says so and exits instead of restarting workers for ever: plugin modules
and key files are loaded once before any worker starts (a failure exits with
:data:`EXIT_CONFIG_ERROR`), and a worker that exits non-zero within a few seconds of its start
:data:`_CRASH_LOOP_LIMIT` times in a row stops the producer (:data:`EXIT_CRASH_LOOP`). A worker that
ran a while and then died is restarted with a backoff; if it died making a sample, that sample goes
on the producer's poison list first (:mod:`zerofeed.producer.crashes`). Workers are stopped with
SIGTERM and watch the supervisor's end themselves: no multiprocessing Event or lock, whose named
semaphores a SIGKILL would leave in ``/dev/shm``. Its working folder is owned
(:mod:`zerofeed.common.leftovers`): the next start removes it if this process was killed.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, MutableSequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from zerofeed.common.cores import usable_cores
from zerofeed.common.errors import ConfigError
from zerofeed.common.leftovers import owned_folder
from zerofeed.common.producer_config import ProducerConfig
from zerofeed.producer.accelerators import decode_path
from zerofeed.producer.crashes import Breadcrumb, PoisonList, last_sample, oom_kills
from zerofeed.producer.sizing import SizingPolicy, WorkerSizer, WorkerTally

if TYPE_CHECKING:
    from zerofeed.common.metrics import MetricsServer
    from zerofeed.producer.worker import Worker

__all__ = ["EXIT_CONFIG_ERROR", "EXIT_CRASH_LOOP", "Supervisor", "worker_main"]

log = logging.getLogger("zerofeed.producer")

EXIT_CONFIG_ERROR = 2
"""Exit code: the producer could not start (a plugin that does not import, an unreadable key)."""
EXIT_CRASH_LOOP = 3
"""Exit code: a worker crashed within seconds of starting, again and again."""

_RESTART_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)
_QUICK_EXIT_SECONDS = 5.0  # a worker that fails sooner after its start "crashed at start"
_CRASH_LOOP_LIMIT = 3  # quick crashes in a row of one worker that stop the producer
_CRASH_SIGNALS = frozenset(
    {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT}
)  # a worker ended by one of these crashed on what it was doing
_WATCH_SECONDS = 0.5


def worker_main(
    config: ProducerConfig,
    name: str,
    log_level: int,
    index: int,
    crashes: str,
    tallies: MutableSequence[float] | None = None,
) -> None:
    """Entry point of a spawned worker process. ``tallies`` (shared with the supervisor) gets
    the images this worker makes, the seconds it spends on them and the CPU seconds it gets
    meanwhile (:class:`_Tally`).

    A worker that cannot start (a plugin, key or metrics port it cannot use) logs why and exits
    with :data:`EXIT_CONFIG_ERROR`; the supervisor restarts it, and stops if that keeps happening.
    """
    # Imported here so that the supervisor itself stays light.
    from PIL import Image

    logging.basicConfig(level=log_level, format=_LOG_FORMAT, stream=sys.stderr)
    Image.MAX_IMAGE_PIXELS = config.max_pixels  # Pillow's process-wide decompression-bomb limit
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    terminated = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: terminated.set())
    report_requested = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: report_requested.set())
    try:
        worker = _make_worker(
            config,
            name,
            crashes=_Crashes(Path(crashes), index),
            should_stop=terminated.is_set,
            report_requested=report_requested,
            on_batch=None if tallies is None else _Tally(tallies, index).add,
        )
        metrics = _serve_metrics(config, index, worker)
    except ConfigError as exc:  # said once, plainly; the supervisor decides whether to retry
        log.error("worker %s cannot start: %s", name, exc)
        raise SystemExit(EXIT_CONFIG_ERROR) from None
    try:
        worker.run()
    finally:
        if metrics is not None:
            metrics.close()


def _make_worker(
    config: ProducerConfig,
    name: str,
    *,
    crashes: _Crashes,
    should_stop: Callable[[], bool],
    report_requested: threading.Event,
    on_batch: Callable[[int, float, float], None] | None,
) -> Worker:
    from zerofeed.common.locations import AllowList
    from zerofeed.common.storage import ObjectStores, StoreOptions
    from zerofeed.producer.batch import BatchMaker
    from zerofeed.producer.cache import DiskCache
    from zerofeed.producer.paths import SampleLocator
    from zerofeed.producer.plugins import load_plugins
    from zerofeed.producer.reader import SampleReader
    from zerofeed.producer.worker import Worker

    transforms = load_plugins(config.plugins)
    parent = multiprocessing.parent_process()
    return Worker(
        config,
        name=name,
        maker=BatchMaker(
            reader=SampleReader(
                locator=SampleLocator(config.data_root),
                allow=AllowList(config.allow),
                stores=ObjectStores(
                    StoreOptions(
                        request_timeout=config.store_timeout, retry_seconds=config.store_retry
                    )
                ),
                cache=DiskCache(config.cache_dir, config.cache_size) if config.cache_dir else None,
            ),
            transforms=transforms,
            sample_timeout=config.sample_timeout or None,
            breadcrumb=Breadcrumb(crashes.breadcrumb),
            crashed=crashes.poison.load(),
        ),
        transforms=tuple(sorted(transforms)),
        should_stop=should_stop,
        parent_sentinel=parent.sentinel if parent is not None else None,
        report_requested=report_requested,
        on_batch=on_batch,
    )


def _serve_metrics(config: ProducerConfig, index: int, worker: Worker) -> MetricsServer | None:
    """Worker ``index``'s metrics server (on ``metrics_port + index``), or None without one."""
    if config.metrics_port is None:
        return None
    from zerofeed.common.metrics import MetricsServer

    return MetricsServer(config.metrics_port + index, worker.report.metrics)


_LOG_FORMAT = "%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s"


@dataclass(frozen=True)
class _Crashes:
    """Where worker ``index`` notes the sample it makes, and the producer's poison list."""

    folder: Path
    index: int

    @property
    def breadcrumb(self) -> Path:
        return self.folder / f"w{self.index}.breadcrumb"

    @property
    def poison(self) -> PoisonList:
        return PoisonList(self.folder / "poison")


@dataclass(frozen=True)
class _Tally:
    """One worker's running totals in the array it shares with the supervisor (only this
    worker writes them; an aligned double is written whole, so the supervisor reads no torn
    value)."""

    totals: MutableSequence[float]
    index: int

    WIDTH = 3  # entries per worker: images, seconds, CPU seconds

    def add(self, images: int, seconds: float, cpu_seconds: float) -> None:
        at = self.WIDTH * self.index
        self.totals[at] += images
        self.totals[at + 1] += seconds
        self.totals[at + 2] += cpu_seconds

    @classmethod
    def sum(cls, totals: MutableSequence[float]) -> WorkerTally:
        """All the workers' totals together."""
        return WorkerTally(
            images=sum(totals[0 :: cls.WIDTH]),
            busy_seconds=sum(totals[1 :: cls.WIDTH]),
            cpu_seconds=sum(totals[2 :: cls.WIDTH]),
        )


@dataclass
class _Slot:
    """One worker position: the process serving it now (None while a restart waits, or while
    the position is not wanted: :mod:`zerofeed.producer.sizing` runs fewer workers)."""

    name: str
    index: int
    wanted: bool = True
    process: BaseProcess | None = None
    started: float = 0.0
    restarts: int = 0  # restarts in a row of a worker that ran under a minute: the backoff step
    quick_crashes: int = 0  # non-zero exits in a row, each within _QUICK_EXIT_SECONDS of starting
    restart_at: float | None = None


class Supervisor:
    """Runs ``config.workers`` worker processes until asked to stop; with ``config.max_workers``,
    up to that many while each added one raises throughput (:class:`WorkerSizer`).

    Before starting any worker it checks what every worker would fail on (the plugin modules, the
    CURVE key files); a worker that keeps crashing at start stops the whole producer. Either way
    :meth:`run` logs why at ERROR and returns non-zero (:data:`EXIT_CONFIG_ERROR`,
    :data:`EXIT_CRASH_LOOP`) instead of restarting workers that cannot work.
    """

    def __init__(
        self, config: ProducerConfig, *, grace: float = 10.0, sizing: SizingPolicy | None = None
    ) -> None:
        self._config = config
        self._grace = grace
        self._context = multiprocessing.get_context("spawn")
        self._stopping = threading.Event()
        self._oom_kills = oom_kills()  # the cgroup's count so far: a rise blames a SIGKILL
        self._crashes_folder = Path()  # set by run()
        prefix = config.name or f"{socket.gethostname()}:{os.getpid()}"
        most = max(config.workers, config.max_workers)
        self._names = [f"{prefix}/w{i}" for i in range(most)]
        self._sizer = WorkerSizer(
            low=config.workers, high=most, cores=usable_cores(), policy=sizing
        )
        # Each worker's _Tally: shared memory without a lock (each entry has one writer), in an
        # already-unlinked file, so nothing is left behind by a SIGKILL.
        self._tallies = (
            self._context.RawArray("d", _Tally.WIDTH * most) if self._sizer.adapts else None
        )

    def run(self) -> int:
        """Start the workers and supervise them; returns the process exit code."""
        try:
            _preflight(self._config)
        except ConfigError as exc:
            log.error("producer cannot start: %s", exc)
            return EXIT_CONFIG_ERROR
        self._install_signal_handlers()
        if self._config.exit_with_parent:
            threading.Thread(target=self._watch_stdin, name="parent-watch", daemon=True).start()
        log.info(
            "producer starting %d worker(s)%s for %s",
            self._config.workers,
            f" (up to {len(self._names)} while that raises throughput)"
            if self._sizer.adapts
            else "",
            ", ".join(self._config.endpoints),
        )
        path = decode_path()
        (log.info if path.accelerated else log.warning)("decode path: %s", path.summary)
        slots = [
            _Slot(name=name, index=index, wanted=index < self._sizer.workers)
            for index, name in enumerate(self._names)
        ]
        self._crashes_folder, owner = owned_folder("producer")
        try:
            for slot in slots:
                if slot.wanted:
                    self._start(slot)
            return self._supervise(slots)
        finally:
            self._shutdown(slots)
            shutil.rmtree(self._crashes_folder, ignore_errors=True)
            owner.release()

    def _supervise(self, slots: list[_Slot]) -> int:
        """Watch the workers until a stop is asked for (0) or one keeps crashing at start."""
        while not self._stopping.is_set():
            self._wait(slots)
            for slot in slots:
                code = self._check(slot)
                if code is not None:
                    return code
            if self._tallies is not None:
                tally = _Tally.sum(self._tallies)
                self._resize(slots, self._sizer.update(time.monotonic(), tally))
        return 0

    def _resize(self, slots: list[_Slot], workers: int) -> None:
        """Start or stop workers (the last positions first) until ``workers`` are wanted. A
        stopped one finishes its batch and hands its queued tasks back, as on any stop."""
        wanted = [slot for slot in slots if slot.wanted]
        for slot in reversed(wanted[workers:]):
            slot.wanted = False
            slot.restart_at = None
            if slot.process is not None and slot.process.is_alive():
                log.info("stopping worker %s: fewer workers make as many images", slot.name)
                slot.process.terminate()
        for slot in slots[len(wanted) : workers]:
            if slot.process is not None:  # still stopping: started on a later turn
                break
            slot.wanted = True
            slot.quick_crashes = slot.restarts = 0
            self._start(slot)

    def _wait(self, slots: list[_Slot]) -> None:
        """Until a worker exits, a restart is due, or half a second has passed."""
        now = time.monotonic()
        due = [slot.restart_at - now for slot in slots if slot.restart_at is not None]
        timeout = max(0.0, min([_WATCH_SECONDS, *due]))
        sentinels = [slot.process.sentinel for slot in slots if slot.process is not None]
        if sentinels:
            multiprocessing.connection.wait(sentinels, timeout=timeout)
        else:
            self._stopping.wait(timeout)

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

    def _start(self, slot: _Slot) -> None:
        process = self._context.Process(
            target=worker_main,
            args=(
                self._config,
                slot.name,
                log.getEffectiveLevel(),
                slot.index,
                str(self._crashes_folder),
                self._tallies,
            ),
            name=slot.name,
            daemon=True,
        )
        process.start()
        slot.process = process
        slot.started = time.monotonic()
        slot.restart_at = None

    def _check(self, slot: _Slot) -> int | None:
        """Bring ``slot`` up to date: start a restart that is due, or note a worker that ended.

        Returns the producer's exit code when it should stop (its consumer gone, with
        ``--exit-with-consumer``; a worker crashing at start), else None."""
        now = time.monotonic()
        if slot.restart_at is not None:
            if now >= slot.restart_at and not self._stopping.is_set():
                self._start(slot)
            return None
        process = slot.process
        if process is None or process.is_alive() or self._stopping.is_set():
            return None
        code = process.exitcode
        uptime = now - slot.started
        slot.process = None
        process.close()
        if not slot.wanted:  # stopped because fewer workers are wanted
            return None
        if self._config.exit_with_consumer and code == 0:
            # The consumer this producer served is gone: the other workers stop too, including
            # one that started too late to meet it (it would wait for the next consumer).
            log.info("worker %s saw its consumer go; stopping the producer", slot.name)
            self.stop()
            return 0
        if code and self._note_crash(slot, code):
            slot.quick_crashes = 0  # a sample's fault, not the worker's start-up: not a loop
        else:
            slot.quick_crashes = (
                slot.quick_crashes + 1 if code and uptime < _QUICK_EXIT_SECONDS else 0
            )
        if slot.quick_crashes >= _CRASH_LOOP_LIMIT:
            log.error(
                "worker %s keeps crashing at start: it exited with code %s %d times in a row, "
                "each within %.0f s of starting; stopping the producer instead of restarting it "
                "again. The worker's own error is logged above: fix that and start the producer "
                "again.",
                slot.name,
                code,
                slot.quick_crashes,
                _QUICK_EXIT_SECONDS,
            )
            return EXIT_CRASH_LOOP
        slot.restarts = 0 if uptime > 60 else slot.restarts + 1
        delay = _RESTART_BACKOFF[min(slot.restarts, len(_RESTART_BACKOFF) - 1)]
        log.error(
            "worker %s exited with code %s after %.1f s; restarting in %.1f s",
            slot.name,
            code,
            uptime,
            delay,
        )
        slot.restart_at = now + delay
        return None

    def _note_crash(self, slot: _Slot, code: int) -> bool:
        """A worker died abnormally: if it was making a sample, no worker makes it again.
        True when a sample was to blame."""
        crashes = _Crashes(self._crashes_folder, slot.index)
        sample = last_sample(crashes.breadcrumb)
        if sample is None:
            return False
        how = _exit_description(code)
        if code < 0 and -code not in _CRASH_SIGNALS:
            # Killed from outside: the sample's fault only if the OOM killer did it (a huge
            # image can provoke it), not an operator's or a chaos test's kill.
            seen, self._oom_kills = self._oom_kills, oom_kills()
            if seen is None or self._oom_kills is None or self._oom_kills <= seen:
                return False
            how = "killed by the out-of-memory killer"
        crashes.poison.add(
            sample,
            f"a worker process died ({how}) while making this sample; it is skipped from now on "
            "so that it cannot end the other workers too",
        )
        log.error(
            "worker %s died (%s) while making sample %r; this producer's workers report it as a "
            "bad sample (kind 'crash') from now on",
            slot.name,
            how,
            sample,
        )
        return True

    def _shutdown(self, slots: list[_Slot]) -> None:
        # SIGTERM is the workers' graceful stop; no multiprocessing Event or lock, whose named
        # semaphores (/dev/shm/sem.*) a SIGKILL of this process would leave behind.
        running = [(slot.name, slot.process) for slot in slots if slot.process is not None]
        for _, process in running:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + self._grace
        for _, process in running:
            process.join(max(0.0, deadline - time.monotonic()))
        for name, process in running:
            if process.is_alive():
                log.warning("worker %s did not stop within %.0f s; killing it", name, self._grace)
                process.kill()
                process.join()
        log.info("producer stopped")


def _preflight(config: ProducerConfig) -> None:
    """Load what every worker loads at start, once, so that a mistake is one clear error.

    Raises:
        ConfigError: a plugin module does not import or is malformed, or a CURVE key file
            cannot be read.
    """
    if config.server_key is not None and config.secret_key is not None:
        from zerofeed.common.curve import load_public, load_secret

        load_public(config.server_key)
        load_secret(config.secret_key)
    if config.plugins:
        from zerofeed.producer.plugins import load_plugins

        load_plugins(config.plugins)


def _exit_description(code: int) -> str:
    """A worker's exit code in words: ``killed by SIGSEGV`` or ``exit code 3``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"

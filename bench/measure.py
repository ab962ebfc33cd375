"""How figures are taken: timed epochs (wall and process CPU time) and a process tree's peak RSS."""

from __future__ import annotations

import resource
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

__all__ = [
    "EpochTimes",
    "TreeSampler",
    "max_rss_bytes",
    "sys_time",
    "timed_epochs",
    "tree_cpu_seconds",
]

SAMPLE_INTERVAL = 0.1  # its CPU time is taken from the measured rows: 10 Hz keeps it near 0.3 %
_REFRESH_INTERVAL = 2.0  # listing descendants scans /proc: do it less often than sampling RSS


@dataclass
class EpochTimes:
    """Timed epochs of one pipeline: wall seconds, this process's CPU seconds, work done."""

    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    images: list[int] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)
    sys_seconds: list[float] = field(default_factory=list)
    end_seconds: list[float] = field(default_factory=list)
    tree_cpu_seconds: list[float] = field(default_factory=list)

    def add(
        self,
        seconds: float,
        cpu_seconds: float,
        images: int,
        batches: int,
        sys_seconds: float,
        tree_cpu_seconds: float,
    ) -> None:
        self.seconds.append(seconds)
        self.cpu_seconds.append(cpu_seconds)
        self.images.append(images)
        self.batches.append(batches)
        self.sys_seconds.append(sys_seconds)
        self.tree_cpu_seconds.append(tree_cpu_seconds)

    def summary(self) -> dict[str, object]:
        """Per-run images/s and CPU ms per batch, and their medians."""
        rates = [n / s for n, s in zip(self.images, self.seconds, strict=True)]
        cpu_ms = [1000 * c / b for c, b in zip(self.cpu_seconds, self.batches, strict=True)]
        sys_ms = [1000 * c / b for c, b in zip(self.sys_seconds, self.batches, strict=True)]
        tree_ms = [1000 * c / n for c, n in zip(self.tree_cpu_seconds, self.images, strict=True)]
        return {
            "tree_cpu_ms_per_image": statistics.median(tree_ms),
            "runs_tree_cpu_ms_per_image": tree_ms,
            "images_per_s": statistics.median(rates),
            "runs_images_per_s": rates,
            "cpu_ms_per_batch": statistics.median(cpu_ms),
            "runs_cpu_ms_per_batch": cpu_ms,
            "sys_ms_per_batch": statistics.median(sys_ms),
            "end_s": self.end_seconds,
            "images_per_run": self.images,
            "batches_per_run": self.batches,
        }


def timed_epochs(
    run_epoch: Callable[[], tuple[int, int, float]], *, warmup: int, runs: int
) -> EpochTimes:
    """Call ``run_epoch`` ``warmup`` times, then time ``runs`` calls.

    ``run_epoch`` returns ``(images, batches, last)``, ``last`` the ``time.perf_counter()`` when
    the last batch arrived: an epoch lasts until then. What comes after (closing the iterator,
    ``on_epoch_end``) is kept apart as ``end_s``: tf.data sometimes stalls there for seconds,
    a fixed cost per epoch that small epochs would otherwise blow up.

    CPU time is ``time.process_time()``: every thread of this process, no child process; its
    kernel part (``ru_stime``) is kept apart too. :func:`tree_cpu_seconds` adds up the whole
    process tree's (producers, pool workers) over the same span.
    """
    for _ in range(warmup):
        run_epoch()
    times = EpochTimes()
    for _ in range(runs):
        wall, cpu, kernel, tree = (
            time.perf_counter(),
            time.process_time(),
            sys_time(),
            tree_cpu_seconds(),
        )
        images, batches, last = run_epoch()
        tree = tree_cpu_seconds() - tree
        times.end_seconds.append(time.perf_counter() - last)
        times.add(
            last - wall, time.process_time() - cpu, images, batches, sys_time() - kernel, tree
        )
    return times


def tree_cpu_seconds() -> float:
    """CPU seconds, user and kernel, of this process and every process it started: itself and
    its reaped children (``getrusage``), plus each live descendant with the children it reaped
    (``psutil``). The figure to compare pipelines by on a busy machine: it does not depend on
    how the cores are shared, only on the work done."""
    total = sum(
        usage.ru_utime + usage.ru_stime
        for usage in (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
    )
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue  # it ended meanwhile: its time is in its parent's reaped children
        total += times.user + times.system + times.children_user + times.children_system
    return total


def sys_time() -> float:
    """CPU seconds this process has spent in the kernel (all threads)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def max_rss_bytes() -> int:
    """This process's peak resident set size so far (``getrusage``; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class TreeSampler:
    """Samples the RSS of a process and of all its descendants every 100 ms, in a thread.

    Run it in the *parent* of the measured process, so that sampling costs the measured process
    no CPU time. Tree figures add up each process's RSS (pages shared between processes, such as
    a forked worker's, are counted in each).
    """

    def __init__(self, pid: int) -> None:
        self._root = psutil.Process(pid)
        self._procs: dict[int, psutil.Process] = {pid: self._root}
        self.peak_rss = 0
        self.peak_tree_rss = 0
        self.peak_processes = 1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tree-sampler", daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        next_refresh = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_refresh:
                self._refresh()
                next_refresh = now + _REFRESH_INTERVAL
            self._sample()
            self._stop.wait(SAMPLE_INTERVAL)

    def _refresh(self) -> None:
        try:
            children = self._root.children(recursive=True)
        except psutil.Error:
            return
        for child in children:
            self._procs.setdefault(child.pid, child)

    def _sample(self) -> None:
        total = 0
        for pid, proc in list(self._procs.items()):
            try:
                rss = proc.memory_info().rss
            except psutil.Error:
                del self._procs[pid]
                continue
            total += rss
            if proc is self._root:
                self.peak_rss = max(self.peak_rss, rss)
        self.peak_tree_rss = max(self.peak_tree_rss, total)
        self.peak_processes = max(self.peak_processes, len(self._procs))

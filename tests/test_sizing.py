"""Producers size themselves from measured throughput.

:class:`WorkerSizer`'s decisions on made-up figures (its clock is the caller's), then a real
``zerofeed producer --max-workers`` feeding a real consumer: it grows while that pays, and the
epoch is still delivered exactly once.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.conftest import ids_of, remote_feed, start_producer, wait_until
from zerofeed.producer.sizing import SizingPolicy, WorkerSizer, WorkerTally

POLICY = SizingPolicy(window=1.0, settle=1.0, gain=0.05, busy=0.85, backoff=(10.0, 20.0))


class Machine:
    """Workers that make ``rate(workers)`` images/s, busy ``busy`` of the time, ticked by 0.5 s."""

    def __init__(
        self,
        sizer: WorkerSizer,
        rate,
        busy: float = 1.0,
        cpu: Callable[[int], float] = lambda w: 1.0,
    ) -> None:
        self.sizer = sizer
        self.rate = rate
        self.busy = busy
        self.cpu = cpu  # the share of their busy time the workers get a CPU, by worker count
        self.cpu_seconds = 0.0
        self.now = 0.0
        self.images = 0.0
        self.busy_seconds = 0.0
        self.workers = sizer.workers
        self.counts: list[int] = []

    def run(self, seconds: float) -> None:
        for _ in range(int(seconds / 0.5)):
            self.now += 0.5
            self.images += 0.5 * self.rate(self.workers)
            self.busy_seconds += 0.5 * self.workers * self.busy
            self.cpu_seconds += 0.5 * self.workers * self.busy * self.cpu(self.workers)
            tally = WorkerTally(self.images, self.busy_seconds, self.cpu_seconds)
            self.workers = self.sizer.update(self.now, tally)
            self.counts.append(self.workers)


def test_it_grows_while_each_worker_pays_and_stops_at_the_best_count() -> None:
    # Two cores and a busy loop: 2 workers 935 img/s, 3 1,054, 4 1,013 (measured); the workers
    # get a CPU for 2/3, 1/2, 2/5 ... of their busy time.
    figures = {2: 935.0, 3: 1054.0, 4: 1013.0, 5: 990.0}
    machine = Machine(
        WorkerSizer(low=2, high=5, cores=2, policy=POLICY),
        figures.__getitem__,
        cpu=lambda workers: 2 / (workers + 1),
    )
    machine.run(30)
    assert 4 in machine.counts  # it tried one more than the best
    assert machine.workers == 3
    assert max(machine.counts) == 4


def test_a_worker_that_does_not_help_is_stopped_and_tried_again_only_later() -> None:
    machine = Machine(
        WorkerSizer(low=2, high=4, cores=2, policy=POLICY), lambda w: 1000.0, cpu=lambda w: 0.6
    )
    machine.run(3)  # a window's baseline, then a try: 1 s to start, 1 s measured
    assert machine.counts[-1] == 3
    machine.run(1)
    assert machine.workers == 2  # no gain: back
    back_at = len(machine.counts)
    machine.run(9)
    assert set(machine.counts[back_at:]) == {2}  # resting (10 s after the first failure)
    machine.run(2)
    assert machine.counts[-1] == 3  # then it tries again: the load may have changed
    machine.run(120)
    tries = sum(1 for a, b in zip(machine.counts, machine.counts[1:], strict=False) if b > a)
    # 135 s: tries at 1.5, 14.5, then every 23 s (a 20 s rest, then 3 s); with the first rest
    # (10 s) repeating it would be every 13 s, 10 tries.
    assert tries == 7
    assert machine.workers == 2


def test_with_a_worker_per_core_that_gets_its_core_none_is_added() -> None:
    # An idle machine: one more worker would only take CPU from the trainer (and measurements
    # are noisy: a lucky window must not add one).
    machine = Machine(
        WorkerSizer(low=2, high=4, cores=2, policy=POLICY),
        lambda workers: 1000.0 + 60 * workers,
        cpu=lambda workers: 0.95,
    )
    machine.run(30)
    assert set(machine.counts) == {2}
    below = Machine(WorkerSizer(low=1, high=4, cores=2, policy=POLICY), lambda w: 600.0 * min(w, 2))
    below.run(30)
    assert below.workers == 2  # a free core: grown to it, and no further


def test_idle_workers_are_never_added_to() -> None:
    # The consumer takes less than the workers could make (a model slower than the feed).
    machine = Machine(WorkerSizer(low=2, high=4, cores=2, policy=POLICY), lambda w: 500.0, busy=0.4)
    machine.run(30)
    assert set(machine.counts) == {2}


def test_without_room_nothing_is_decided() -> None:
    sizer = WorkerSizer(low=3, high=3, cores=2, policy=POLICY)
    assert not sizer.adapts
    machine = Machine(sizer, lambda workers: 100.0 * workers)
    machine.run(20)
    assert set(machine.counts) == {3}
    with pytest.raises(ValueError, match="low <= high"):
        WorkerSizer(low=3, high=2, cores=2)


def _workers(producer: int) -> int:
    """The producer's worker processes (spawned children; not multiprocessing's helpers)."""
    return sum(
        "spawn_main" in " ".join(child.cmdline()) for child in psutil.Process(producer).children()
    )


@pytest.mark.usefixtures("no_leftover_processes")
def test_a_producer_grows_to_the_workers_that_pay_and_delivers_exactly_once(
    id_dataset: Path,
) -> None:
    """One worker leaves the second core idle: a second one raises images/s, and stays.

    Each sample also waits 10 ms in a transform (``tests.plugin_slow``), so that the workers, not
    this test's consumer (which checks every batch on the same two cores), set the pace however
    busy the machine is: two workers then make twice the images, and the second is kept."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs")
    augment = {"custom": {"pause": {"seconds": 0.01}}}
    with remote_feed(
        id_dataset, batch_size=20, image_size=(192, 192), seed=3, augment=augment
    ) as seq:
        producer = start_producer(
            seq.endpoint,
            id_dataset.parent,
            "--plugin",
            "tests.plugin_slow",
            "--max-workers",
            "2",
            "--log-level",
            "INFO",
            capture_log=True,
        )
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(producer.stderr), daemon=True)
        reader.start()
        epochs: list[list[int]] = []
        try:
            wait_until(lambda: seq.stats.producers_connected == 1)
            first_seen = time.monotonic()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not any("keeping them" in x for x in lines):
                epochs.append([row for i in range(len(seq)) for row in ids_of(seq[i][0])])
                seq.on_epoch_end()
            assert _workers(producer.pid) == 2, "".join(lines)  # the producer's log so far
            # The feed's producer-seconds: two workers connected all through the next epochs
            # (2 s of them), between one and two on average since the start (FeedMonitor's
            # divisor).
            before, started = seq.stats, time.monotonic()
            while time.monotonic() - started < 2.0:
                epochs.append([row for i in range(len(seq)) for row in ids_of(seq[i][0])])
                seq.on_epoch_end()
            after, ended = seq.stats, time.monotonic()
            assert (after.producer_seconds - before.producer_seconds) / (
                ended - started
            ) == pytest.approx(2.0, abs=0.05)
            assert 1.0 < after.producer_seconds / (ended - first_seen) < 2.0
        finally:
            producer.send_signal(signal.SIGTERM)
            producer.wait(timeout=30)
            reader.join(timeout=30)
        log = "".join(lines)
        assert "trying 2 workers" in log and "keeping them" in log, log
        assert len(epochs) >= 2
        for rows in epochs:  # every epoch, before, during and after the growth: each sample once
            assert sorted(rows) == list(range(100))

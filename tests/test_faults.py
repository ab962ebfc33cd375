"""Producers that crash, stall, join or leave mid-epoch: every sample still exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from pathlib import Path

import psutil
import pytest

from tests.conftest import ids_of, remote_feed, start_producer, wait_until, write_id_dataset
from zerofeed.consumer import FeedSequence

pytestmark = pytest.mark.usefixtures("no_leftover_processes")


def worker_pids(producer: subprocess.Popen) -> list[int]:
    return [
        c.pid
        for c in psutil.Process(producer.pid).children()
        if "spawn_main" in " ".join(c.cmdline())
    ]


def stop(*producers: subprocess.Popen) -> None:
    for producer in producers:
        if producer.poll() is None:
            producer.send_signal(signal.SIGTERM)
    for producer in producers:
        producer.wait(timeout=30)


@pytest.fixture
def slow_dataset(tmp_path: Path) -> Path:
    return write_id_dataset(tmp_path, 240)


def feed(manifest: Path, **kwargs: object) -> FeedSequence:
    """A feed that notices lost producers quickly."""
    settings = {
        "batch_size": 8,
        "seed": 4,
        "lease_timeout": 2.0,
        "heartbeat_interval": 0.25,
        "max_queue_size": 6,
    }
    return remote_feed(manifest, **(settings | kwargs))


def test_sigkilled_worker_mid_epoch_loses_and_duplicates_nothing(slow_dataset: Path) -> None:
    with feed(slow_dataset) as seq:
        producers = [
            start_producer(seq.endpoint, slow_dataset.parent, "--heartbeat-interval", "0.25")
            for _ in range(3)
        ]
        try:
            rows = [r for i in range(5) for r in ids_of(seq[i][0])]
            wait_until(lambda: seq.stats.producers_connected == 3)
            victim = worker_pids(producers[0])
            assert victim
            os.kill(victim[0], signal.SIGKILL)  # it holds leases: max_queue_size spreads them
            rows += [r for i in range(5, len(seq)) for r in ids_of(seq[i][0])]
            assert Counter(rows) == Counter(range(240))
            seq.on_epoch_end()
            rows = [r for i in range(len(seq)) for r in ids_of(seq[i][0])]
            assert Counter(rows) == Counter(range(240))
            stats = seq.stats
            assert stats.producers_lost >= 1
        finally:
            stop(*producers)


def test_stalled_producer_late_result_is_refused(slow_dataset: Path) -> None:
    """A producer presumed lost (SIGSTOP past its lease) comes back: its late results are refused."""
    # 10 ms a sample: a producer is (almost) always mid-batch, so the stalled one holds a batch
    # in hand that it finishes and sends after SIGCONT.
    paced = {"custom": {"pause": {"seconds": 0.01}}}
    options = ("--heartbeat-interval", "0.25", "--plugin", "tests.plugin_slow")
    with feed(slow_dataset, max_queue_size=4, augment=paced) as seq:
        fast = start_producer(seq.endpoint, slow_dataset.parent, *options)
        stalled = start_producer(seq.endpoint, slow_dataset.parent, *options)
        try:
            wait_until(lambda: seq.stats.producers_connected == 2)
            seq[0]
            frozen = worker_pids(stalled)
            for pid in frozen:
                os.kill(pid, signal.SIGSTOP)
            rows = [r for i in range(len(seq)) for r in ids_of(seq[i][0])]
            assert seq.stats.producers_lost >= 1
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
            wait_until(lambda: seq.stats.messages_rejected >= 1)  # its late result, refused
            seq.on_epoch_end()
            rows2 = [r for i in range(len(seq)) for r in ids_of(seq[i][0])]
            assert Counter(rows) == Counter(range(240))
            assert Counter(rows2) == Counter(range(240))
        finally:
            for pid in worker_pids(stalled):
                os.kill(pid, signal.SIGCONT)
            stop(fast, stalled)


def test_producer_joining_mid_epoch_gets_work_and_sigterm_returns_tasks(
    slow_dataset: Path,
) -> None:
    with feed(slow_dataset, lease_timeout=30.0) as seq:
        first = start_producer(seq.endpoint, slow_dataset.parent)
        try:
            rows = [r for i in range(10) for r in ids_of(seq[i][0])]
            second = start_producer(seq.endpoint, slow_dataset.parent)
            wait_until(lambda: seq.stats.producers_connected == 2)
            stop(first)  # BYE returns its queued tasks: no 30 s lease wait
            rows += [r for i in range(10, len(seq)) for r in ids_of(seq[i][0])]
            assert Counter(rows) == Counter(range(240))
            stats = seq.stats
            assert stats.producers_lost == 0
            assert stats.producers_connected == 1
        finally:
            stop(first, second)

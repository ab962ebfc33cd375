"""Producers started with the `zerofeed producer` command, connecting over TCP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import ids_of, remote_feed, start_producer, wait_until

pytestmark = pytest.mark.usefixtures("no_leftover_processes")


@contextmanager
def producer(*args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """A `zerofeed producer` process, stopped with SIGTERM (as `docker stop` does) at the end."""
    command = [sys.executable, "-m", "zerofeed", "producer", *args]
    process = subprocess.Popen(
        command, env={**os.environ, **(env or {})}, stderr=subprocess.PIPE, text=True
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        assert process.returncode == 0, err


def test_remote_producers_over_tcp_exactly_once(id_dataset: Path) -> None:
    with remote_feed(id_dataset, batch_size=9, seed=2) as seq:
        assert seq.endpoint.startswith("tcp://127.0.0.1:") and not seq.endpoint.endswith(":0")
        with producer(
            "--connect", seq.endpoint, "--workers", "2", "--data-root", str(id_dataset.parent)
        ):
            for _ in range(2):
                rows = [r for i in range(len(seq)) for r in ids_of(seq[i][0])]
                assert Counter(rows) == Counter(range(100))
                seq.on_epoch_end()
            # both workers, however slow the second was to start
            wait_until(lambda: seq.stats.producers_connected == 2)


def test_producer_started_first_takes_settings_from_environment(
    id_dataset: Path, tmp_path: Path
) -> None:
    """A producer may start before the consumer exists, configured only by ZEROFEED_* variables."""
    endpoint = f"ipc://{tmp_path}/feed.sock"
    env = {
        "ZEROFEED_CONNECT": endpoint,
        "ZEROFEED_WORKERS": "1",
        "ZEROFEED_DATA_ROOT": str(id_dataset.parent),
    }
    with producer(env=env):
        with remote_feed(id_dataset, batch_size=50, bind=endpoint) as seq:
            assert sorted(ids_of(seq[0][0]) + ids_of(seq[1][0])) == list(range(100))
        # The same producer serves the next consumer once the first is gone.
        with remote_feed(id_dataset, batch_size=100, bind=endpoint) as seq:
            assert sorted(ids_of(seq[0][0])) == list(range(100))


def test_producer_cli_rejects_bad_settings_clearly(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "zerofeed.producer", "--connect", "localhost:5555"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "not a ZeroMQ address" in result.stderr
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "zerofeed.producer",
            "--connect",
            "tcp://127.0.0.1:1",
            "--data-root",
            str(tmp_path / "missing"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "is not a directory" in result.stderr


def test_no_producer_gives_a_clear_timeout(id_dataset: Path) -> None:
    from zerofeed.common.errors import FeedTimeoutError

    with (
        remote_feed(id_dataset, batch_size=10, timeout=0.5) as seq,
        pytest.raises(FeedTimeoutError, match=r"no producer is connected.*zerofeed producer"),
    ):
        seq[0]


def test_waiting_without_producers_logs_how_to_start_one(
    id_dataset: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from zerofeed.common.errors import FeedTimeoutError

    with (
        remote_feed(id_dataset, batch_size=10, timeout=1.0, wait_log_interval=0.2) as seq,
        pytest.raises(FeedTimeoutError),
    ):
        seq[0]
    waits = [r.getMessage() for r in caplog.records if "no producer is connected" in r.getMessage()]
    assert len(waits) >= 2, "the wait is reported at intervals"
    assert f"zerofeed producer --connect {seq.endpoint}" in waits[0]


def test_producer_can_exit_once_its_consumer_is_gone(id_dataset: Path) -> None:
    with remote_feed(id_dataset, batch_size=50) as seq:
        process = start_producer(
            seq.endpoint,
            id_dataset.parent,
            "--workers",
            "2",
            "--exit-with-consumer",
            "--heartbeat-interval",
            "0.2",
            "--reconnect-after",
            "3",
        )
        try:
            assert sorted(ids_of(seq[0][0]) + ids_of(seq[1][0])) == list(range(100))
        except BaseException:
            process.kill()
            raise
    assert process.wait(timeout=60) == 0, "it ends by itself, cleanly, when the trainer is gone"

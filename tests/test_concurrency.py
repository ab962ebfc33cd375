"""No hang from the consumer's own side: monitors read a live feed while training crosses epochs.

A training thread crosses hundreds of epoch boundaries (as Keras does: on_epoch_begin, every
batch, on_epoch_end) while other threads read ``stats`` (as FeedMonitor does), scrape the
Prometheus endpoint and ask ``zerofeed status``, all against real producer processes and sockets.
Before the engine's lock discipline, ``stats`` took the dispatcher's lock and then the feed's,
epoch moves the other way round, and this test hung within seconds.
"""

from __future__ import annotations

import threading
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ID_SIZE, write_id_dataset
from zerofeed.consumer import FeedSequence
from zerofeed.status import ask

pytestmark = pytest.mark.usefixtures("no_leftover_processes")

EPOCHS = 300


def test_monitors_reading_a_feed_never_block_training(tmp_path: Path) -> None:
    pytest.importorskip("prometheus_client")
    manifest = write_id_dataset(tmp_path, 16)
    with FeedSequence(
        manifest,
        batch_size=8,
        image_size=ID_SIZE,
        seed=1,
        local_producers=1,
        bind="tcp://127.0.0.1:0",
        metrics_port=0,
        timeout=30,
    ) as seq:
        stop = threading.Event()
        errors: list[BaseException] = []
        reads = {"stats": 0, "metrics": 0, "status": 0}

        def forever(name: str, read: object) -> None:
            try:
                while not stop.is_set():
                    read()  # type: ignore[operator]
                    reads[name] += 1
            except BaseException as exc:
                errors.append(exc)

        def scrape() -> None:
            url = f"http://127.0.0.1:{seq.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as response:
                if b"zerofeed_epoch" not in response.read():
                    raise AssertionError("no zerofeed_epoch metric")

        def train() -> None:
            try:
                for _ in range(EPOCHS):
                    seq.on_epoch_begin()
                    for index in range(len(seq)):
                        seq[index]
                    seq.on_epoch_end()
            except BaseException as exc:
                errors.append(exc)

        readers = [
            threading.Thread(target=forever, args=("stats", lambda: seq.stats), daemon=True),
            threading.Thread(target=forever, args=("stats", lambda: seq.stats), daemon=True),
            threading.Thread(target=forever, args=("metrics", scrape), daemon=True),
            threading.Thread(
                target=forever,
                args=("status", lambda: ask(seq.endpoint.replace("0.0.0.0", "127.0.0.1"))),
                daemon=True,
            ),
        ]
        trainer = threading.Thread(target=train, daemon=True)
        for thread in [*readers, trainer]:
            thread.start()
        trainer.join(timeout=180)
        hung = trainer.is_alive()
        stop.set()
        for reader in readers:
            reader.join(timeout=15)
        assert not hung, f"training hung after {seq.epoch} epochs (reads: {reads})"
        assert not errors, errors
        assert not any(reader.is_alive() for reader in readers), "a monitor hung"
        assert seq.epoch == EPOCHS
        assert min(reads.values()) > 0, reads


def test_a_worker_serving_three_consumers_under_a_heartbeat_storm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The producer worker's links lock: its main thread polls, receives and sends results on
    three consumers' sockets while its heartbeat thread sends on all three every few ms."""
    from collections import Counter

    from tests.conftest import ids_of
    from tests.test_producer_start import running_worker
    from zerofeed.consumer import DataConfig, Feed, ServingConfig

    manifest = write_id_dataset(tmp_path, 30)
    monkeypatch.chdir(tmp_path)  # the in-process worker reads paths relative to its folder
    data = DataConfig(batch_size=3, image_size=ID_SIZE, seed=4)
    serving = ServingConfig(bind="tcp://127.0.0.1:0", local_producers=0, timeout=30)
    feeds = [Feed(manifest, data=data, serving=serving) for _ in range(3)]
    errors: list[BaseException] = []
    seen: list[Counter[int]] = [Counter() for _ in feeds]

    def train(index: int) -> None:
        try:
            for epoch in range(20):
                for batch in range(len(feeds[index])):
                    seen[index].update(ids_of(feeds[index].get(epoch, batch).images))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    try:
        endpoints = [feed.endpoint for feed in feeds]
        with running_worker(*endpoints, heartbeat_interval=0.005):
            threads = [threading.Thread(target=train, args=(i,)) for i in range(3)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=120)
            assert not any(thread.is_alive() for thread in threads), "a consumer hung"
    finally:
        for feed in feeds:
            feed.close()
    assert not errors, errors
    assert all(counts == Counter({row: 20 for row in range(30)}) for counts in seen)


@pytest.mark.parametrize("move", ["advance", "move_to"])
def test_a_get_waiting_on_another_thread_fails_at_once_when_the_feed_moves_past_it(
    tmp_path: Path, move: str
) -> None:
    """``Feed.advance`` is safe from any thread: a ``get`` waiting on another thread for a batch
    the feed no longer serves (an earlier epoch, or an earlier batch of this one) says so at once,
    not at its next wait log. No producer is connected, so nothing else could wake it."""
    from zerofeed.consumer import DataConfig, Feed, ServingConfig, ZerofeedError

    manifest = write_id_dataset(tmp_path, 40)
    errors: list[ZerofeedError] = []
    with Feed(
        manifest,
        data=DataConfig(batch_size=4, image_size=ID_SIZE, seed=0),
        serving=ServingConfig(local_producers=0, wait_log_interval=60),
    ) as feed:

        def wait_for_batch_3() -> None:
            try:
                feed.get(0, 3)
            except ZerofeedError as exc:
                errors.append(exc)

        waiter = threading.Thread(target=wait_for_batch_3, daemon=True)
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive(), "with no producer, batch 3 cannot have come"
        if move == "advance":
            feed.advance(1)
        else:
            feed.move_to(0, 5)
        waiter.join(10)
        assert not waiter.is_alive(), "the waiting get was not told that the feed moved"
    assert len(errors) == 1
    assert "was moved to batch" in str(errors[0]), errors[0]

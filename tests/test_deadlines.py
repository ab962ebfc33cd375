"""A batch never stays with a producer that does not deliver it (issue 12): a peer that is
connected and silent, or that answers with results that never validate, holds nothing for long;
a real producer beside it finishes every epoch, every sample exactly once."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from tests.conftest import ID_SIZE, ids_of
from zerofeed.common.protocol import Hello, Result, Task, Welcome, decode, encode
from zerofeed.consumer import DataConfig, Feed, FeedSequence, FeedTimeoutError, ServingConfig

pytestmark = pytest.mark.usefixtures("no_leftover_processes")


class Peer:
    """A raw DEALER that says HELLO and takes tasks; what it does with them is the test's."""

    def __init__(self, endpoint: str, credits: int = 2) -> None:
        self._context = zmq.Context()
        self.socket = self._context.socket(zmq.DEALER)
        self.socket.linger = 0
        self.socket.connect(endpoint)
        self.socket.send_multipart(encode(Hello(producer="peer", credits=credits, transforms=())))
        self.tasks: list[Task] = []

    def poll(self, seconds: float) -> None:
        """Receive for ``seconds``, keeping the tasks."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.socket.poll(left * 1000):
                message = decode(self.socket.recv_multipart())
                if isinstance(message, Task):
                    self.tasks.append(message)
                elif not isinstance(message, Welcome):
                    continue

    def close(self) -> None:
        self.socket.close(linger=0)
        self._context.term()


@pytest.fixture
def feed(id_dataset: Path) -> Iterator[FeedSequence]:
    with FeedSequence(
        id_dataset,
        batch_size=10,
        image_size=ID_SIZE,
        seed=1,
        bind="tcp://127.0.0.1:0",
        local_producers=0,
        lease_timeout=60.0,  # a peer that keeps quiet is not presumed lost: only its tasks end
        task_timeout=1.0,
        timeout=60,
    ) as seq:
        yield seq


def start_local_producer(seq: FeedSequence, tmp_path: Path):  # type: ignore[no-untyped-def]
    from tests.conftest import start_producer

    return start_producer(seq.endpoint, seq.manifest.producer_root or tmp_path)


def one_epoch(seq: FeedSequence) -> list[int]:
    rows = [row for index in range(len(seq)) for row in ids_of(seq[index][0])]
    seq.on_epoch_end()
    return rows


def test_a_connected_peer_that_never_answers_holds_no_batch(
    feed: FeedSequence, tmp_path: Path
) -> None:
    peer = Peer(feed.endpoint)
    try:
        peer.poll(0.5)
        assert peer.tasks, "the silent peer was given tasks"
        producer = start_local_producer(feed, tmp_path)
        try:
            for _ in range(2):
                assert sorted(one_epoch(feed)) == list(range(100))
            stats = feed.stats
            assert stats.tasks_overdue >= 1
            assert stats.producers_lost == 0  # the peer is still connected: only its tasks ended
        finally:
            producer.terminate()
            producer.wait(timeout=30)
    finally:
        peer.close()


def test_a_peer_whose_results_never_validate_is_refused_and_named(
    feed: FeedSequence, tmp_path: Path, caplog
) -> None:
    peer = Peer(feed.endpoint, credits=1)
    try:
        for _ in range(3):  # each refused result puts the batch straight back: to this peer
            peer.poll(0.5)
            task = peer.tasks.pop()
            wrong = Result(task_id=task.task_id, count=len(task.samples), images=b"not pixels")
            peer.socket.send_multipart(encode(wrong))
        peer.poll(0.5)
        with pytest.raises(FeedTimeoutError, match=r"1 of them get no tasks .*failed validation"):
            feed.feed.get(0, 0, timeout=1.5)
        assert feed.stats.producers_refused == 1
        assert "gets no more tasks" in caplog.text
        producer = start_local_producer(feed, tmp_path)
        try:
            assert sorted(one_epoch(feed)) == list(range(100))
        finally:
            producer.terminate()
            producer.wait(timeout=30)
    finally:
        peer.close()


@contextlib.contextmanager
def producer_that_hangs_on_row_7(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """30 id images, row 7 marked, and a producer of 6 workers whose plugin hangs for good on the
    marked one. Yields the manifest and the endpoint to bind; kills the producer's tree after."""
    import numpy as np
    import psutil
    from PIL import Image

    from tests.conftest import start_producer, write_id_dataset

    manifest = write_id_dataset(tmp_path, 30)
    marked = np.zeros((*ID_SIZE, 3), np.uint8)
    marked[..., 2] = 199
    Image.fromarray(marked).save(tmp_path / "img" / "00007.png")
    endpoint = f"ipc://{tmp_path}/feed.sock"
    producer = start_producer(
        endpoint, tmp_path, "--plugin", "tests.plugin_hanging", "--workers", "6"
    )
    try:
        yield manifest, endpoint
    finally:
        tree = [psutil.Process(producer.pid), *psutil.Process(producer.pid).children(True)]
        for process in tree:  # workers stuck in the plugin cannot stop gracefully
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(tree, timeout=30)
        producer.wait(timeout=30)


def test_a_sample_that_hangs_every_producer_is_left_out_and_the_epoch_ends(tmp_path: Path) -> None:
    with (
        producer_that_hangs_on_row_7(tmp_path) as (manifest, endpoint),
        FeedSequence(
            manifest,
            batch_size=5,
            image_size=ID_SIZE,
            augment={"custom": {"hang_on_marked": {}}},
            plugins=["tests.plugin_hanging"],
            shuffle=False,
            on_error="skip",
            bind=endpoint,
            local_producers=0,
            task_timeout=1.0,
            max_queue_size=3,
            timeout=60,
        ) as seq,
    ):
        for epoch in range(2):  # the second epoch leaves the sample out from the start
            rows = [row for index in range(len(seq)) for row in ids_of(seq[index][0])]
            assert sorted(rows) == [r for r in range(30) if r != 7], f"epoch {epoch}"
            seq.on_epoch_end()
        skipped = seq.stats.skipped
    assert [(s.path, s.kind, s.epoch) for s in skipped] == [
        ("img/00007.png", "stalled", 0),
        ("img/00007.png", "stalled", 1),
    ]


def test_a_batch_of_only_stalled_samples_wakes_its_waiter_at_once(tmp_path: Path) -> None:
    """Such a batch gets no task: it is ready when its turn to be issued comes, and a wait for it
    ends then, not at the next result (here none is coming) or the next wait log."""
    with (
        producer_that_hangs_on_row_7(tmp_path) as (manifest, endpoint),
        Feed(
            manifest,
            data=DataConfig(
                batch_size=1,
                image_size=ID_SIZE,
                augment={"custom": {"hang_on_marked": {}}},
                shuffle=False,
                on_error="skip",
            ),
            serving=ServingConfig(
                bind=endpoint,
                local_producers=0,
                plugins=["tests.plugin_hanging"],
                task_timeout=1.0,
                max_queue_size=1,  # in epoch 1, nothing but the awaited batch is issued
                timeout=20,
                wait_log_interval=20,
            ),
        ) as feed,
    ):
        for batch in range(len(feed)):  # batch 7 (row 7 alone) is left out as stalled
            feed.get(0, batch)
        started = time.monotonic()
        stalled = feed.get(1, 7)
        waited = time.monotonic() - started
    assert len(stalled.images) == 0
    assert [(s.path, s.kind, s.epoch) for s in stalled.skipped] == [("img/00007.png", "stalled", 1)]
    assert waited < 5, f"the wait for a batch of only stalled samples took {waited:.1f} s"

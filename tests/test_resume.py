"""Consumer restart and resume: producers find the new consumer; epochs replay exactly."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.conftest import ID_SIZE, ids_of, remote_feed, start_producer
from zerofeed.consumer import FeedSequence

pytestmark = pytest.mark.usefixtures("no_leftover_processes")

AUGMENT = {"random_resized_crop": True, "horizontal_flip": True}


def batches(seq: FeedSequence, count: int | None = None) -> list[bytes]:
    return [seq[i][0].tobytes() for i in range(count if count is not None else len(seq))]


def test_resume_at_an_epoch_and_batch_replays_the_same_data(id_dataset: Path) -> None:
    settings = {
        "batch_size": 16,
        "image_size": ID_SIZE,
        "seed": 9,
        "augment": AUGMENT,
        "local_producers": 2,
    }
    with FeedSequence(id_dataset, **settings) as seq:
        epochs = []
        for _ in range(3):
            epochs.append(batches(seq))
            seq.on_epoch_end()
    with FeedSequence(id_dataset, initial_epoch=2, **settings) as seq:
        assert seq.epoch == 2
        assert batches(seq) == epochs[2]
    with FeedSequence(id_dataset, **settings) as seq:
        seq.seek(1, batch=3)
        assert batches(seq, len(seq) - 3) == epochs[1][3:]
        with pytest.raises(IndexError, match="resumed at batch 3"):
            seq[len(seq) - 1]
        seq.on_epoch_end()
        assert seq.epoch == 2
        assert batches(seq) == epochs[2]


def test_producer_reconnects_to_a_restarted_consumer(id_dataset: Path) -> None:
    with remote_feed(id_dataset, batch_size=10, seed=1) as first:
        endpoint = first.endpoint
        producer = start_producer(
            endpoint, id_dataset.parent, "--heartbeat-interval", "0.2", "--reconnect-after", "2"
        )
        try:
            reference = [ids_of(first[i][0]) for i in range(len(first))]
        except BaseException:
            producer.kill()
            raise
    try:  # the consumer is gone, mid-stream; a new one binds the same address
        with remote_feed(id_dataset, batch_size=10, seed=1, bind=endpoint) as second:
            assert [ids_of(second[i][0]) for i in range(len(second))] == reference
            assert producer.poll() is None, "the same producer process served both"
    finally:
        producer.send_signal(signal.SIGTERM)
        producer.wait(timeout=30)

"""Producer-side input faults: reported as bad samples, and the producer stays up."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ids_of, remote_feed, start_producer, write_id_dataset

pytestmark = pytest.mark.usefixtures("no_leftover_processes")


def test_hung_file_bomb_and_vanished_file_are_bad_samples(tmp_path: Path) -> None:
    manifest = write_id_dataset(tmp_path, 12)
    hung = tmp_path / "img" / "00003.png"
    hung.unlink()
    os.mkfifo(hung)  # opening it blocks for ever, like a stalled network file system
    Image.fromarray(np.zeros((400, 400, 3), np.uint8)).save(tmp_path / "img" / "00005.png")
    (tmp_path / "img" / "00008.png").unlink()
    producer = start_producer(
        f"ipc://{tmp_path}/f.sock",
        tmp_path,
        "--sample-timeout",
        "1",
        "--max-pixels",
        "50000",
        "--heartbeat-interval",
        "0.2",
    )
    try:
        with remote_feed(
            manifest,
            batch_size=6,
            shuffle=False,
            on_error="skip",
            bind=f"ipc://{tmp_path}/f.sock",
            lease_timeout=1.0,
            heartbeat_interval=0.2,
        ) as seq:
            rows = ids_of(seq[0][0]) + ids_of(seq[1][0])
            assert rows == [0, 1, 2, 4, 6, 7, 9, 10, 11]
            kinds = {s.path: s.kind for s in seq.stats.skipped}
            assert kinds == {
                "img/00003.png": "timeout",
                "img/00005.png": "too_large",
                "img/00008.png": "missing",
            }
            # The hang did not cost the producer its lease: heartbeats went on meanwhile.
            assert seq.stats.producers_lost == 0
            seq.on_epoch_end()
            assert ids_of(seq[0][0]) == [0, 1, 2, 4], "the producer is still serving"
        assert producer.poll() is None
    finally:
        producer.send_signal(signal.SIGTERM)
        producer.wait(timeout=30)

"""FeedMonitor's figures against runs whose truth is known; tf.data interop."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.conftest import ID_SIZE, ids_of, start_producer, write_id_dataset
from zerofeed.consumer import FeedMonitor, FeedSequence

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_leftover_processes")]


def tiny_model() -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((*ID_SIZE, 3), dtype="uint8"),
            keras.layers.Rescaling(1 / 255),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model


class SlowSteps(keras.callbacks.Callback):
    """Makes every training step take at least ``seconds``: a model slower than its feed."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        time.sleep(self.seconds)  # simulated compute, not synchronisation


def test_slowed_producers_show_a_high_wait_share_and_advice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manifest = write_id_dataset(tmp_path, 48)
    augment = {"custom": {"pause": {"seconds": 0.02}}}
    with FeedSequence(
        manifest,
        batch_size=8,
        image_size=ID_SIZE,
        augment=augment,
        plugins=["tests.plugin_slow"],
        local_producers=1,
        seed=0,
    ) as feed:
        monitor = FeedMonitor(feed)
        with caplog.at_level(logging.WARNING, logger="zerofeed.consumer"):
            history = tiny_model().fit(feed, epochs=2, verbose=0, callbacks=[monitor])
    shares = history.history["feed_wait_share"]
    # The first epoch also holds Keras' tracing of the step, longer on a busy machine: the
    # steady state is the second one.
    assert shares[-1] > 0.5, shares
    assert history.history["feed_producers"][-1] == pytest.approx(1.0, abs=0.01)
    assert history.history["feed_images_per_s"][-1] > 0
    advice = [r.getMessage() for r in caplog.records if "input-bound" in r.getMessage()]
    assert advice and "more producer worker" in advice[-1]


def test_a_feed_faster_than_the_model_shows_a_low_wait_share(tmp_path: Path) -> None:
    manifest = write_id_dataset(tmp_path, 48)
    with FeedSequence(
        manifest, batch_size=8, image_size=ID_SIZE, local_producers=1, seed=0
    ) as feed:
        history = tiny_model().fit(
            feed, epochs=2, verbose=0, callbacks=[FeedMonitor(feed), SlowSteps(0.15)]
        )
    assert history.history["feed_wait_share"][-1] < 0.2, history.history["feed_wait_share"]
    assert history.history["feed_reissued"] == [0.0, 0.0]


def test_as_tf_dataset_has_a_correct_element_spec_and_one_epoch_per_pass(
    id_dataset: Path,
) -> None:
    with FeedSequence(
        id_dataset,
        batch_size=30,
        image_size=ID_SIZE,
        label_mode="categorical",
        seed=0,
        local_producers=1,
    ) as feed:
        dataset = feed.as_tf_dataset()
        images, labels = dataset.element_spec
        assert images.shape.as_list() == [None, *ID_SIZE, 3] and images.dtype.name == "uint8"
        assert labels.shape.as_list() == [None, 3] and labels.dtype.name == "float32"
        # nothing to tune; autotuning stalled epoch starts on busy cores (bench/epoch_stall.py)
        assert dataset.options().autotune.enabled is False
        epochs = []
        for _ in range(2):
            epochs.append(sorted(r for x, _ in dataset for r in ids_of(x.numpy())))
        assert epochs == [list(range(100))] * 2
        assert feed.epoch == 2
        np.testing.assert_array_equal(np.asarray(epochs[0]), np.arange(100))


def test_producers_report_throughput_and_stage_times(tmp_path: Path) -> None:
    import signal

    from tests.conftest import remote_feed

    manifest = write_id_dataset(tmp_path, 60)
    with remote_feed(manifest, batch_size=10) as feed:
        producer = start_producer(
            feed.endpoint, tmp_path, "--report-interval", "0", capture_log=True
        )
        try:
            rows = [r for i in range(len(feed)) for r in ids_of(feed[i][0])]
            producer.send_signal(signal.SIGUSR1)  # a report on request
            rows += ids_of(feed[0][0])  # keep it working a moment; the report is logged between
            seen = feed.stats.images_delivered
        finally:
            producer.send_signal(signal.SIGTERM)
            _, log_text = producer.communicate(timeout=30)
    assert sorted(rows[:60]) == list(range(60)) and seen >= 60
    reports = [line for line in log_text.splitlines() if "images/s" in line]
    assert reports, log_text
    assert "ms per image: read" in reports[-1] and "decode" in reports[-1]


def test_zerofeed_status_prints_the_live_state(tmp_path: Path) -> None:
    import subprocess
    import sys

    from zerofeed.status import ask

    manifest = write_id_dataset(tmp_path, 40)
    with FeedSequence(
        manifest,
        batch_size=10,
        image_size=ID_SIZE,
        local_producers=1,
        bind="tcp://127.0.0.1:0",
        seed=0,
    ) as feed:
        for i in range(len(feed)):
            feed[i]
        state = ask(feed.endpoint)
        assert state["images_delivered"] == 40
        assert len(state["producers"]) == 1
        # each producer says how it decodes (its HELLO's `decoder`): here the C accelerators
        assert state["producers"][0]["decoder"].startswith("accelerated")
        printed = subprocess.run(
            [sys.executable, "-m", "zerofeed", "status", feed.endpoint],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert printed.returncode == 0, printed.stderr
    assert "delivered 40 images" in printed.stdout and "1 producer worker" in printed.stdout
    assert "decode: accelerated" in printed.stdout
    silent = subprocess.run(
        [sys.executable, "-m", "zerofeed", "status", "tcp://127.0.0.1:1", "--timeout", "0.5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert silent.returncode == 1 and "no answer" in silent.stderr


def test_prometheus_metrics_of_consumer_and_producers(tmp_path: Path) -> None:
    import signal
    import socket
    import urllib.request

    from tests.conftest import remote_feed

    def scrape(port: int) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            return reply.read().decode()

    with socket.socket() as probe:  # a free base port for the producer's worker
        probe.bind(("127.0.0.1", 0))
        producer_port = probe.getsockname()[1]
    manifest = write_id_dataset(tmp_path, 30)
    with remote_feed(manifest, batch_size=10, metrics_port=0) as feed:
        producer = start_producer(feed.endpoint, tmp_path, "--metrics-port", str(producer_port))
        try:
            for i in range(len(feed)):
                feed[i]
            consumer_text = scrape(feed.metrics_port)
            producer_text = scrape(producer_port)
        finally:
            producer.send_signal(signal.SIGTERM)
            producer.wait(timeout=30)
    assert "zerofeed_images_delivered_total 30.0" in consumer_text
    assert "zerofeed_producers_connected 1.0" in consumer_text
    worker_seconds = re.search(r"^zerofeed_producer_seconds_total (\S+)$", consumer_text, re.M)
    assert worker_seconds and float(worker_seconds[1]) > 0, consumer_text
    assert 'zerofeed_producer_images_total{worker="' in producer_text
    assert 'stage="decode"' in producer_text


def test_as_tf_dataset_feeds_a_distribution_strategy(id_dataset: Path) -> None:
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with FeedSequence(
        id_dataset, batch_size=25, image_size=ID_SIZE, seed=0, local_producers=1
    ) as feed:
        distributed = strategy.experimental_distribute_dataset(feed.as_tf_dataset())
        rows = []
        for images, _ in distributed:
            rows += ids_of(strategy.experimental_local_results(images)[0].numpy())
    assert sorted(rows) == list(range(100))

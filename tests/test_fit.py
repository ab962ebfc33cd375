"""A real model.fit on CPU, fed by FeedSequence with local producers."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from tests.conftest import write_id_dataset
from zerofeed.consumer import FeedSequence
from zerofeed.sampledata import make_sample_dataset

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_leftover_processes")]


def small_cnn(size: int, classes: int) -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((size, size, 3), dtype="uint8"),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(classes, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def test_fit_learns_a_separable_dataset(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    data = make_sample_dataset(tmp_path, classes=3, per_class=48, image_size=(40, 40))
    augment = {"random_resized_crop": {"scale": [0.7, 1.0]}, "horizontal_flip": True}
    with (
        FeedSequence(
            data.train_csv,
            batch_size=16,
            image_size=(32, 32),
            augment=augment,
            seed=0,
            local_producers=2,
        ) as train,
        FeedSequence(
            data.val_csv, batch_size=16, image_size=(32, 32), shuffle=False, local_producers=1
        ) as val,
    ):
        model = small_cnn(32, 3)
        history = model.fit(train, validation_data=val, epochs=8, verbose=0)  # shuffle=True
        assert train.epoch == 8
        assert val.epoch == 8
        stats = train.stats
    assert history.history["val_accuracy"][-1] >= 0.9, history.history
    assert history.history["accuracy"][-1] > history.history["accuracy"][0]
    # 8 epochs of every batch, plus the batches TensorFlow peeks at to learn shapes.
    assert 8 * len(train) <= stats.batches_delivered <= 8 * len(train) + 2
    assert not stats.skipped


def test_bad_file_stops_fit_with_its_path(tmp_path: Path) -> None:
    manifest = write_id_dataset(tmp_path, 24, classes=2)
    (tmp_path / "img" / "00013.png").write_bytes(b"garbage")
    with (
        FeedSequence(
            manifest, batch_size=8, image_size=(16, 16), shuffle=False, local_producers=1
        ) as feed,
        pytest.raises(Exception, match=r"img/00013\.png"),
    ):
        small_cnn(16, 2).fit(feed, epochs=1, verbose=0)


def test_skip_mode_trains_through_bad_files(tmp_path: Path) -> None:
    manifest = write_id_dataset(tmp_path, 24, classes=2)
    (tmp_path / "img" / "00013.png").write_bytes(b"garbage")
    with FeedSequence(
        manifest, batch_size=8, image_size=(16, 16), local_producers=1, on_error="skip", seed=0
    ) as feed:
        history = small_cnn(16, 2).fit(feed, epochs=2, verbose=0)
        skipped = feed.stats.skipped
    assert np.isfinite(history.history["loss"]).all()
    assert {(s.path, s.epoch) for s in skipped} == {("img/00013.png", 0), ("img/00013.png", 1)}

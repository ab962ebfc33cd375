"""The README's demo: make a sample dataset, train a small CNN fed by local zerofeed producers.

    ./dev demo                    # or: python examples/train_small_cnn.py [--epochs 2] [--data DIR]

Prints, per epoch, the images per second delivered and the share of the epoch's time that
training spent waiting for data.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras

from zerofeed.consumer import FeedSequence
from zerofeed.sampledata import make_sample_dataset


def build_model(image_size: tuple[int, int], classes: int) -> keras.Model:
    """A small CNN that takes uint8 images and rescales them itself."""
    return keras.Sequential(
        [
            keras.Input((*image_size, 3), dtype="uint8"),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(classes, activation="softmax"),
        ]
    )


class FeedReport(keras.callbacks.Callback):
    """Prints images/s and the share of time spent waiting for data, per epoch."""

    def __init__(self, feed: FeedSequence) -> None:
        super().__init__()
        self.feed = feed

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        stats = self.feed.stats
        self.started = time.perf_counter()
        self.images, self.waited = stats.images_delivered, stats.wait_seconds

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        stats = self.feed.stats
        elapsed = time.perf_counter() - self.started
        images = stats.images_delivered - self.images
        waited = stats.wait_seconds - self.waited
        print(
            f"epoch {epoch + 1}: {images / elapsed:,.0f} images/s, "
            f"{100 * waited / elapsed:.0f} % of step time waiting for data, "
            f"{stats.producers_connected} producer workers"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/sample"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=96)
    args = parser.parse_args()

    dataset = make_sample_dataset(
        args.data, classes=4, per_class=128, image_size=(args.image_size, args.image_size)
    )
    print(f"dataset: {dataset.num_images} images in {dataset.root}")
    size = (args.image_size, args.image_size)
    augment = {"random_resized_crop": {"scale": [0.6, 1.0]}, "horizontal_flip": True}
    with (
        FeedSequence(
            dataset.train_csv, batch_size=args.batch_size, image_size=size, augment=augment, seed=0
        ) as train,
        FeedSequence(
            dataset.val_csv,
            batch_size=args.batch_size,
            image_size=size,
            shuffle=False,
            local_producers=1,
        ) as val,
    ):
        model = build_model(size, len(dataset.class_names))
        model.compile(
            optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        model.fit(
            train, validation_data=val, epochs=args.epochs, verbose=2, callbacks=[FeedReport(train)]
        )
        stats = train.stats
        print(
            f"delivered {stats.images_delivered} images in {stats.batches_delivered} batches; "
            f"{len(stats.skipped)} skipped; waited {stats.wait_seconds:.1f} s in total"
        )


if __name__ == "__main__":
    main()

"""Runs ``model.fit`` on a FeedSequence under the backend ``KERAS_BACKEND`` names and prints, as
JSON, the manifest rows each training step saw, per Keras epoch (tests/test_backends.py).

    python tests/fit_probe.py MANIFEST --epochs 2 [--backup DIR --interrupt-at EPOCH] [--tf-dataset]

With ``--tf-dataset`` (TensorFlow backend) it fits ``feed.as_tf_dataset()`` instead of the feed.

The model's first layer records its (concrete) input: the id images encode their manifest row in
their colour (tests/conftest.py), so the record says exactly what was trained on, in order.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras
import numpy as np

from tests.conftest import ID_SIZE, ids_of
from zerofeed.consumer import FeedCheckpoint, FeedSequence


class Interrupt(Exception):
    """Stands for the job being killed mid-epoch."""


class Seen:
    """The rows of every batch trained on (a plain object: Keras would copy a list attribute)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []


class Recorder(keras.layers.Layer):
    """Passes its input through, noting the rows of every concrete batch it sees."""

    def __init__(self, seen: Seen, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.seen = seen

    def call(self, x):  # type: ignore[no-untyped-def]
        try:
            concrete = np.asarray(keras.ops.convert_to_numpy(x))
        except Exception:  # a symbolic tensor (shape inference): nothing to record
            return x
        if concrete.ndim == 4 and concrete.shape[0] > 0:
            self.seen.batches.append(ids_of(concrete.astype(np.uint8)))
        return x


class EpochLog(keras.callbacks.Callback):
    def __init__(self, seen: Seen, log: dict[int, list[list[int]]]) -> None:
        super().__init__()
        self.seen, self.log = seen, log

    def on_epoch_begin(self, epoch: int, logs: object = None) -> None:
        self.seen.batches.clear()

    def on_epoch_end(self, epoch: int, logs: object = None) -> None:
        self.log[epoch] = list(self.seen.batches)


class InterruptAt(keras.callbacks.Callback):
    def __init__(self, epoch: int, batch: int) -> None:
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, -1

    def on_epoch_begin(self, epoch: int, logs: object = None) -> None:
        self.current = epoch

    def on_train_batch_end(self, batch: int, logs: object = None) -> None:
        if self.current == self.epoch and batch == self.batch:
            raise Interrupt


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("manifest")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--backup", help="BackupAndRestore folder (and the feed state file)")
    parser.add_argument("--interrupt-at", type=int, help="stop fit in this epoch, at batch 1")
    parser.add_argument("--tf-dataset", action="store_true", help="fit feed.as_tf_dataset()")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    seen = Seen()
    log: dict[int, list[list[int]]] = {}
    with FeedSequence(
        args.manifest,
        batch_size=args.batch_size,
        image_size=ID_SIZE,
        augment={"horizontal_flip": True},
        seed=args.seed,
        local_producers=1,
        timeout=60,
    ) as feed:
        model = keras.Sequential(
            [
                keras.Input((*ID_SIZE, 3), dtype="uint8"),
                Recorder(seen),
                keras.layers.Rescaling(1 / 255),
                keras.layers.GlobalAveragePooling2D(),
                keras.layers.Dense(3, activation="softmax"),
            ]
        )
        model.compile("sgd", "sparse_categorical_crossentropy", run_eagerly=True)
        callbacks: list[keras.callbacks.Callback] = [EpochLog(seen, log)]
        if args.backup:
            callbacks += [
                keras.callbacks.BackupAndRestore(args.backup),
                FeedCheckpoint(feed, Path(args.backup) / "feed.json"),
            ]
        if args.interrupt_at is not None:
            callbacks.append(InterruptAt(args.interrupt_at, 1))
        interrupted = False
        try:
            data = feed.as_tf_dataset() if args.tf_dataset else feed
            model.fit(data, epochs=args.epochs, verbose=0, callbacks=callbacks)
        except Interrupt:
            interrupted = True
        stats = feed.stats
        print(
            json.dumps(
                {
                    "backend": keras.backend.backend(),
                    "epochs": {str(k): v for k, v in log.items()},
                    "feed_epoch": feed.epoch,
                    "batches_per_epoch": len(feed),
                    "batches_delivered": stats.batches_delivered,
                    "images_delivered": stats.images_delivered,
                    "interrupted": interrupted,
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

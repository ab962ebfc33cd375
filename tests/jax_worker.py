"""One process of a 2-process Keras 3 ``model.fit`` under JAX with ``keras.distribution``.

``keras.distribution.initialize`` joins the processes (JAX's coordinator at ``--coordinator``);
``DataParallel`` replicates the model over both processes' CPUs, and every step's global batch is
the two processes' local batches together: each process's ``FeedSequence`` serves its rank's
slice, rank and world size read from JAX by :func:`~zerofeed.consumer.rank_and_world_size`. The
labels are the samples' own manifest rows; a callback records the rows each step trained on
(from the feed's served batches, in the order Keras took them), and ``--out`` gets them with a
digest of the final weights (equal on every process when the gradients were shared).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

os.environ["KERAS_BACKEND"] = "jax"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax

jax.config.update("jax_cpu_collectives_implementation", "gloo")

import keras  # noqa: E402

from tests.rank_trainer import FRAMEWORK_FEED  # noqa: E402
from zerofeed.consumer import FeedBatch, FeedSequence, rank_and_world_size  # noqa: E402


class RowsFeed(FeedSequence):
    """Records the manifest rows of every batch handed to Keras, by (epoch, batch)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.rows: dict[tuple[int, int], list[int]] = {}

    def on_batch(self, batch: FeedBatch) -> None:
        self.rows[(batch.epoch, batch.batch)] = [int(row) for row in batch.rows]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--bind", required=True)
    parser.add_argument("--samples", type=int, required=True)
    parser.add_argument("--coordinator", required=True)
    parser.add_argument("--process", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    keras.distribution.initialize(args.coordinator, num_processes=2, process_id=args.process)
    keras.distribution.set_distribution(keras.distribution.DataParallel(auto_shard_dataset=False))
    info = rank_and_world_size()
    if not info.source.startswith("keras.distribution"):
        raise SystemExit(f"the rank came from {info.source}, not from keras.distribution")
    rank, world_size = info
    train = RowsFeed(
        args.manifest, rank=rank, world_size=world_size, bind=args.bind, **FRAMEWORK_FEED
    )
    inputs = keras.Input((16, 16, 3), dtype="uint8")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(args.samples)(x))
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(train, epochs=2, verbose=0)
    epochs = [
        {
            "epoch": e,
            "rows": [
                r for (epoch, _), rows in sorted(train.rows.items()) if epoch == e for r in rows
            ],
        }
        for e in range(2)
    ]
    weights = b"".join(keras.ops.convert_to_numpy(w).tobytes() for w in model.trainable_weights)
    args.out.write_text(
        json.dumps({"epochs": epochs, "weights": hashlib.sha256(weights).hexdigest()})
    )
    train.close()


if __name__ == "__main__":
    main()

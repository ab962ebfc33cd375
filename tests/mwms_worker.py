"""One worker of a ``tf.distribute.MultiWorkerMirroredStrategy`` job for the tests.

``TF_CONFIG`` (set by the test) names the cluster and this worker; the rank and world size come
from it through :func:`~zerofeed.consumer.rank_and_world_size`. The worker's ``FeedSequence``
serves its rank's slices from producers the test starts, through
``FeedSequence.as_distributed_dataset``. Training is a custom loop (``strategy.run``, gradients
all-reduced across the workers): Keras 3's ``model.fit`` cannot run under this strategy at all
(it all-reduces its first ``(x, y)`` batch with ``strategy.reduce``, which takes no tuples:
keras-team/keras#20585). The labels are the samples' own manifest rows; ``--out`` gets the rows
each step trained on, per epoch, and a digest of the final weights (equal on every worker when
the gradients were really shared).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras

keras.config.disable_traceback_filtering()
import tensorflow as tf  # noqa: E402

from tests.rank_trainer import FRAMEWORK_FEED  # noqa: E402
from zerofeed.consumer import FeedSequence, rank_and_world_size  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--bind", required=True)
    parser.add_argument("--samples", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    rank, world_size = rank_and_world_size()
    train = FeedSequence(
        args.manifest, rank=rank, world_size=world_size, bind=args.bind, **FRAMEWORK_FEED
    )
    with strategy.scope():
        inputs = keras.Input((16, 16, 3), dtype="uint8")
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
        model = keras.Model(inputs, keras.layers.Dense(args.samples)(x))
        optimizer = keras.optimizers.SGD(0.1)
    loss_of = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")
    global_batch = 4 * world_size

    @tf.function
    def train_step(images, labels):  # type: ignore[no-untyped-def]
        def step(images, labels):  # type: ignore[no-untyped-def]
            with tf.GradientTape() as tape:
                loss = loss_of(labels, model(images, training=True)) / global_batch
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return labels

        return strategy.run(step, args=(images, labels))

    epochs = []
    dataset = train.as_distributed_dataset(strategy)
    for epoch in range(2):
        rows: list[int] = []
        for images, labels in dataset:
            trained = strategy.experimental_local_results(train_step(images, labels))
            rows.extend(int(row) for part in trained for row in part.numpy())
        epochs.append({"epoch": epoch, "rows": rows})
    weights = b"".join(w.numpy().tobytes() for w in model.trainable_variables)
    args.out.write_text(
        json.dumps({"epochs": epochs, "weights": hashlib.sha256(weights).hexdigest()})
    )
    train.close()


if __name__ == "__main__":
    main()

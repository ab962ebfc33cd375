"""The first training step of an epoch under ``model.fit`` on busy cores: Keras' tf.data iterator.

    .venv/bin/python -m bench.epoch_stall                 # ~3 min on 2 cores
    .venv/bin/python -m bench.epoch_stall --epochs 40 --load 2
    .venv/bin/python -m bench.epoch_stall --cases pydataset --steps 400 --epochs 12   # 12 s epochs

Under the TensorFlow backend, ``fit`` makes a new ``tf.data`` iterator for every epoch. With
tf.data's autotuning on (its default, and what Keras' ``PyDataset`` bridge asks for with
``prefetch(AUTOTUNE)``), some epochs' first step waits when other processes keep the cores busy,
as zerofeed's producers do on the training box: about a second in the photos set's 1.5 s epochs,
longer in longer epochs. No input pipeline is involved: the data here is one cached batch handed
out after a 30 ms sleep, the pace of a fed trainer.

Why (TensorFlow 2.21, read in its source and seen in stack dumps): the previous epoch's iterator
is destroyed on the training thread, and its destructor waits for the iterator's autotuning
thread, which sleeps between optimisations for a period that doubles from 10 ms up to 60 s. The
cancellation wakes that thread *before* it marks itself cancelled (``CancellationManager`` runs
its callbacks, then sets the flag), so a thread that wakes in between finds nothing cancelled and
sleeps out the rest of its period. A lost wake-up: how often it hits depends on scheduling, and
busy cores make it likely.

Each case runs ``--epochs`` epochs of the benchmark's trivial model (``bench/pipelines/fit.py``) in
a fresh process, with ``--load`` busy-loop processes competing for the cores:

- ``pydataset``: a ``keras.utils.PyDataset``, as ``FeedSequence`` is (Keras adds
  ``prefetch(AUTOTUNE)``);
- ``tfdata_autotune``: the same generator as a ``tf.data`` dataset with ``prefetch(AUTOTUNE)``;
- ``tfdata_fixed``: the same with ``prefetch(2)`` and ``options.autotune.enabled = False``;
- ``tfdata_map``: ``range(steps).map(numpy_function)`` with tf.data's default options, the shape of
  ``FeedSequence.as_tf_dataset()`` (``zerofeed/consumer/tfdata.py``) had;
- ``tfdata_map_fixed``: the same with autotuning off, as ``as_tf_dataset()`` has it now.

Reported: how many epochs' first step took over 300 ms, and the slowest first steps.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from bench.runner import competing_load

CASES = ("pydataset", "tfdata_autotune", "tfdata_fixed", "tfdata_map", "tfdata_map_fixed")
STEPS = 47  # the photos set's batches an epoch (``--steps``)
STALL_S = 0.3
_PACE_S = 0.03


def _run_case(case: str, epochs: int, steps: int = STEPS) -> list[float]:
    """In this process: ``fit`` for ``epochs`` epochs of ``steps`` steps; each epoch's first step
    in seconds."""
    import keras
    import numpy as np
    import tensorflow as tf

    from bench.config import BATCH_SIZE, IMAGE_SIZE
    from bench.pipelines.fit import EpochTimer, trivial_model

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (BATCH_SIZE, *IMAGE_SIZE, 3), dtype=np.uint8)
    labels = np.zeros(BATCH_SIZE, np.int32)

    def batches() -> Iterator[tuple[Any, Any]]:
        for _ in range(steps):
            time.sleep(_PACE_S)
            yield images, labels

    class Paced(keras.utils.PyDataset):
        def __len__(self) -> int:
            return steps

        def __getitem__(self, index: int) -> tuple[Any, Any]:
            time.sleep(_PACE_S)
            return images, labels

    def load(index: Any) -> tuple[Any, Any]:
        def batch(_: Any) -> tuple[Any, Any]:
            time.sleep(_PACE_S)
            return images, labels

        loaded = tf.numpy_function(batch, [index], (tf.uint8, tf.int32), stateful=True)
        return tf.ensure_shape(loaded[0], images.shape), tf.ensure_shape(loaded[1], labels.shape)

    data: Any
    if case.startswith("tfdata_map"):
        data = tf.data.Dataset.range(steps).map(load)
        if case == "tfdata_map_fixed":
            options = tf.data.Options()
            options.autotune.enabled = False
            data = data.with_options(options)
    elif case == "pydataset":
        data = Paced(workers=1, use_multiprocessing=False)
    else:
        signature = (
            tf.TensorSpec(images.shape, tf.uint8),
            tf.TensorSpec(labels.shape, tf.int32),
        )
        dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
        if case == "tfdata_fixed":
            options = tf.data.Options()
            options.autotune.enabled = False
            data = dataset.prefetch(2).with_options(options)
        else:
            data = dataset.prefetch(tf.data.AUTOTUNE)
    timer = EpochTimer(steps * BATCH_SIZE)
    trivial_model().fit(data, epochs=epochs, verbose=0, callbacks=[timer])
    return [steps[0] for steps in timer.step_seconds[1:]]  # the first epoch also traces


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument(
        "--steps", type=int, default=STEPS, help=f"steps an epoch, 30 ms each (default {STEPS})"
    )
    parser.add_argument("--load", type=int, default=2, help="busy-loop processes (default 2)")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)  # the child's own run
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(_run_case(args.case, args.epochs, args.steps)))
        return
    print(
        f"{args.epochs} epochs of {args.steps} steps a case, {args.load} busy loop(s); "
        "first step of each epoch after the first"
    )
    with competing_load(args.load):
        for case in args.cases:
            child = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.epoch_stall",
                    "--case",
                    case,
                    "--epochs",
                    str(args.epochs),
                    "--steps",
                    str(args.steps),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            firsts = json.loads(child.stdout.strip().splitlines()[-1])
            stalls = sum(first > STALL_S for first in firsts)
            slowest = ", ".join(f"{1000 * s:.0f}" for s in sorted(firsts)[-3:])
            median = 1000 * sorted(firsts)[len(firsts) // 2]
            print(
                f"{case:16s} first steps over {1000 * STALL_S:.0f} ms: {stalls:2d} of {len(firsts)}; "
                f"median {median:.0f} ms, slowest {slowest} ms"
            )


if __name__ == "__main__":
    main()

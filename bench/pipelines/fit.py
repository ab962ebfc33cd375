"""``model.fit`` of a trivial Keras model, with each epoch and step timed by a callback."""

from __future__ import annotations

import time
from typing import Any

import keras
import numpy as np

from bench.config import BATCH_SIZE, IMAGE_SIZE, RunConfig
from bench.measure import EpochTimes, sys_time, tree_cpu_seconds
from bench.pipelines.manifest import read_manifest

MODEL_STRIDE = 16
"""The stand-in model reads 1 pixel in ``MODEL_STRIDE`` x ``MODEL_STRIDE``."""

__all__ = [
    "MODEL_STRIDE",
    "EpochTimer",
    "Pacer",
    "fit_epochs",
    "run_model_alone",
    "trivial_model",
]


def trivial_model(classes: int = 10) -> keras.Model:
    """A stand-in for a model that trains on an accelerator: next to no host CPU per step.

    uint8 images -> every ``MODEL_STRIDE``-th pixel on each axis -> Rescaling ->
    GlobalAveragePooling2D -> Dense. The whole batch still goes through Keras' input path into a
    tensor (what an input pipeline costs the trainer is all there); only the arithmetic a GPU
    would do is cut, so that on the benchmark's 2 cores the step does not compete with the
    pipeline for CPU. The ``model_alone`` row reports what the step costs.
    """
    inputs = keras.Input((*IMAGE_SIZE, 3), dtype="uint8")
    x = inputs[:, ::MODEL_STRIDE, ::MODEL_STRIDE, :]
    x = keras.layers.Rescaling(1 / 255)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(classes)(x))
    model.compile(
        optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    return model


class EpochTimer(keras.callbacks.Callback):
    """Wall and CPU time of every epoch (begin to end), its steps, and each step's duration."""

    def __init__(self, images_per_epoch: int) -> None:
        super().__init__()
        self.images_per_epoch = images_per_epoch
        self.epochs = EpochTimes()
        self.step_seconds: list[list[float]] = []
        self._start = (0.0, 0.0, 0.0, 0.0)
        self._step_start = 0.0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._start = (time.perf_counter(), time.process_time(), sys_time(), tree_cpu_seconds())
        self._step_start = self._start[0]
        self.step_seconds.append([])

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        now = time.perf_counter()
        self.step_seconds[-1].append(now - self._step_start)
        self._step_start = now

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        wall, cpu, kernel, tree = self._start
        self.epochs.add(
            time.perf_counter() - wall,
            time.process_time() - cpu,
            self.images_per_epoch,
            len(self.step_seconds[-1]),
            sys_time() - kernel,
            tree_cpu_seconds() - tree,
        )
        self.epochs.end_seconds.append(0.0)


class Pacer(keras.callbacks.Callback):
    """Holds every training step to ``interval`` seconds by idling after it, as a trainer that
    waits for its input pipeline does: a step that follows an idle spell costs the host more
    CPU than one run flat out (cold caches, a clocked-down core, threads woken again), so a fit
    row is compared with the model alone at the fit row's own pace."""

    def __init__(self, interval: float) -> None:
        super().__init__()
        self.interval = interval
        self._deadline = 0.0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._deadline = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self._deadline += self.interval
        time.sleep(max(0.0, self._deadline - time.perf_counter()))


def fit_epochs(
    data: Any, *, images: int, warmup: int, runs: int, pace: float = 0.0
) -> dict[str, object]:
    """``fit`` for ``warmup + runs`` epochs; the summary of the last ``runs`` epochs.
    ``pace``: hold each step to this many seconds (:class:`Pacer`); 0 runs flat out."""
    timer = EpochTimer(images)
    callbacks: list[keras.callbacks.Callback] = [timer]
    if pace > 0:
        callbacks.insert(0, Pacer(pace))
    trivial_model().fit(data, epochs=warmup + runs, verbose=0, callbacks=callbacks)
    timed = EpochTimes(*(values[warmup:] for values in vars(timer.epochs).values()))
    steps = sorted(s for epoch in timer.step_seconds[warmup:] for s in epoch)
    return {**timed.summary(), "median_step_ms": 1000 * steps[len(steps) // 2]}


def run_model_alone(cfg: RunConfig, *, paced: bool = False) -> dict[str, object]:
    """The fit rows' model and steps with no input pipeline: one cached batch, repeated.

    Its CPU per batch is the training step's own; a fit row's figure minus this one is what its
    input pipeline costs the training process. ``paced``: each step is held to ``cfg.pace_ms``
    (the ``zerofeed_fit`` row's mean step in the same round), so that the model idles between
    steps as it does when fed at that rate.
    """
    import tensorflow as tf

    images = len(read_manifest(cfg.manifest_path)[0])
    steps = -(-images // BATCH_SIZE)
    rng = np.random.default_rng(cfg.seed)
    batch = (
        rng.integers(0, 256, (BATCH_SIZE, *IMAGE_SIZE, 3), dtype=np.uint8),
        rng.integers(0, 10, BATCH_SIZE).astype(np.int32),
    )
    data = tf.data.Dataset.from_tensors(batch).repeat(steps)
    pace = cfg.pace_ms / 1000 if paced else 0.0
    result = fit_epochs(
        data, images=steps * BATCH_SIZE, warmup=cfg.warmup, runs=cfg.runs, pace=pace
    )
    return {**result, "pace_ms": cfg.pace_ms if paced else 0.0}

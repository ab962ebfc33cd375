"""The typical hand-written ``keras.utils.PyDataset``: Pillow in ``__getitem__``.

Iterated through Keras' own machinery (``PyDatasetAdapter.get_numpy_iterator`` with
``on_epoch_begin``/``on_epoch_end``, what ``fit`` uses) with worker processes or threads, or
naively, ``ds[i]`` in a loop in one process.
"""

from __future__ import annotations

import math
import time
from typing import Any

import keras
import numpy as np
from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter
from PIL import Image

from bench.config import BATCH_SIZE, CROP_RATIO, CROP_SCALE, IMAGE_SIZE, RunConfig
from bench.measure import timed_epochs
from bench.pipelines.manifest import read_manifest

__all__ = ["PilDataset", "random_resized_crop", "run_naive", "run_pydataset"]


def random_resized_crop(
    width: int, height: int, rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """torchvision's ``RandomResizedCrop.get_params``: ``(left, top, crop_width, crop_height)``."""
    area = width * height
    log_ratio = (math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
    for _ in range(10):
        target_area = area * rng.uniform(*CROP_SCALE)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    ratio = min(max(width / height, CROP_RATIO[0]), CROP_RATIO[1])  # fallback: centre crop
    w, h = (
        (width, round(width / ratio)) if width / height < ratio else (round(height * ratio), height)
    )
    return (width - w) // 2, (height - h) // 2, w, h


class PilDataset(keras.utils.PyDataset):
    """Batches of 64 augmented 224x224 uint8 images and their int labels."""

    def __init__(self, cfg: RunConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.paths, labels = read_manifest(cfg.manifest_path)
        self.labels = np.asarray(labels, np.int32)

    def __len__(self) -> int:
        return -(-len(self.paths) // BATCH_SIZE)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng()  # fresh entropy: forked workers must not repeat draws
        rows = range(index * BATCH_SIZE, min((index + 1) * BATCH_SIZE, len(self.paths)))
        images = np.stack([self._load(self.paths[row], rng) for row in rows])
        return images, self.labels[rows.start : rows.stop]

    @staticmethod
    def _load(path: str, rng: np.random.Generator) -> np.ndarray:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        left, top, w, h = random_resized_crop(*rgb.size, rng)
        size = (IMAGE_SIZE[1], IMAGE_SIZE[0])
        resized = rgb.resize(size, Image.Resampling.BILINEAR, box=(left, top, left + w, top + h))
        pixels = np.asarray(resized)
        return pixels[:, ::-1] if rng.random() < 0.5 else pixels


def run_pydataset(cfg: RunConfig, *, use_multiprocessing: bool) -> dict[str, object]:
    """``workers=cfg.workers`` processes or threads, through Keras' ``PyDatasetAdapter``."""
    dataset = PilDataset(cfg, workers=cfg.workers, use_multiprocessing=use_multiprocessing)
    adapter = PyDatasetAdapter(dataset, shuffle=False)

    def epoch() -> tuple[int, int, float]:
        images = batches = 0
        last = 0.0
        adapter.on_epoch_begin()
        for x, _ in adapter.get_numpy_iterator():
            images += len(x)
            batches += 1
            last = time.perf_counter()
        adapter.on_epoch_end()
        return images, batches, last

    return timed_epochs(epoch, warmup=cfg.warmup, runs=cfg.runs).summary()


def run_naive(cfg: RunConfig) -> dict[str, object]:
    """The same class with ``workers=1``: ``ds[i]`` in a loop, in this process."""
    dataset = PilDataset(cfg, workers=1)

    def epoch() -> tuple[int, int, float]:
        images = sum(len(dataset[index][0]) for index in range(len(dataset)))
        last = time.perf_counter()
        dataset.on_epoch_end()
        return images, len(dataset), last

    return timed_epochs(epoch, warmup=cfg.warmup, runs=cfg.runs).summary()

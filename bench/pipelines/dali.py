"""NVIDIA DALI's CPU pipeline: read, decode with a random crop, resize, flip, uint8, batch.

``fn.decoders.image_random_crop`` draws the crop window (area 35-100 %, aspect 3/4-4/3, as the
other rows) and decodes only that region of the JPEG where it can (libjpeg-turbo's region
decoding), like tf.data's fused row; ``fn.resize`` to 224x224, bilinear, with or without
antialiasing; a random horizontal flip. CPU only (``device_id=None``), one DALI thread per core,
the batch copied out as one numpy array. DALI installs from PyPI (``nvidia-dali-cuda120``, which
runs CPU pipelines without a GPU); ``./dev bench`` installs it, and without it the rows say so
and are skipped.
"""

from __future__ import annotations

import time
from typing import Any

from bench.config import BATCH_SIZE, CROP_RATIO, CROP_SCALE, IMAGE_SIZE, RunConfig, machine_cores
from bench.measure import timed_epochs
from bench.pipelines.manifest import read_manifest

__all__ = ["DALI_PACKAGE", "run_dali"]

DALI_PACKAGE = "nvidia-dali-cuda120"


def _pipeline(cfg: RunConfig, *, antialias: bool) -> Any:
    from nvidia.dali import fn, pipeline_def, types

    paths, labels = read_manifest(cfg.manifest_path)

    @pipeline_def(
        batch_size=BATCH_SIZE,
        num_threads=machine_cores(),
        device_id=None,
        seed=cfg.seed,
        prefetch_queue_depth=2,
    )
    def pipeline() -> Any:
        jpegs, label = fn.readers.file(
            files=paths, labels=labels, random_shuffle=True, name="reader"
        )
        images = fn.decoders.image_random_crop(
            jpegs,
            device="cpu",
            output_type=types.RGB,
            random_area=list(CROP_SCALE),
            random_aspect_ratio=list(CROP_RATIO),
            num_attempts=10,
        )
        images = fn.resize(
            images,
            resize_y=IMAGE_SIZE[0],
            resize_x=IMAGE_SIZE[1],
            interp_type=types.INTERP_LINEAR,
            antialias=antialias,
        )
        images = fn.flip(images, horizontal=fn.random.coin_flip())
        return images, label

    built = pipeline()
    built.build()
    return built, len(paths)


def run_dali(cfg: RunConfig, *, antialias: bool) -> dict[str, object]:
    """Run ``len(manifest) / 64`` batches an epoch (DALI's reader wraps round) and time them;
    ``{"absent": why}`` without DALI (the row is skipped)."""
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return {"absent": f"DALI is not installed (pip install {DALI_PACKAGE})"}
    pipeline, images = _pipeline(cfg, antialias=antialias)
    batches = -(-images // BATCH_SIZE)

    def epoch() -> tuple[int, int, float]:
        delivered = 0
        last = 0.0
        for _ in range(batches):
            x, _labels = pipeline.run()
            delivered += len(x.as_array())
            last = time.perf_counter()
        return delivered, batches, last

    return timed_epochs(epoch, warmup=cfg.warmup, runs=cfg.runs).summary()

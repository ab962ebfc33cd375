"""Meta's SPDL: FFmpeg decodes each image whole, its filter graph crops, scales and flips.

Per image: ``spdl.io.demux_image`` (the header: the stored size), the random resized crop drawn
as the PIL rows draw it (torchvision's algorithm), then ``decode_packets`` with the filter graph
``crop=w:h:x:y,scale=224:224:flags=bilinear[,hflip],format=rgb24``: swscale's bilinear filter
widens with the scale factor when shrinking, so the resize is antialiased. FFmpeg's JPEG decoder
decodes the whole image (no crop window, no reduced scale). SPDL's own pipeline runs it on one
thread per core (decoding releases the GIL) and stacks batches of 64 in order. SPDL installs
from PyPI (``spdl``, ``spdl_io``) and needs FFmpeg's shared libraries (Debian:
``libavdevice59 libavcodec59 libavformat59 libavfilter8 libswscale6``); without either the row says so and is
skipped.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench.config import BATCH_SIZE, IMAGE_SIZE, RunConfig, machine_cores
from bench.measure import timed_epochs
from bench.pipelines.manifest import read_manifest
from bench.pipelines.pil import random_resized_crop

__all__ = ["SPDL_PACKAGES", "run_spdl"]

SPDL_PACKAGES = ("spdl", "spdl_io")


def _loader(seed: int) -> Any:
    import spdl.io

    def load(item: tuple[int, str, int]) -> tuple[np.ndarray, int]:
        index, path, label = item
        rng = np.random.default_rng([seed, index])
        packets = spdl.io.demux_image(path)
        left, top, width, height = random_resized_crop(packets.width, packets.height, rng)
        flip = ",hflip" if rng.random() < 0.5 else ""
        graph = (
            f"crop={width}:{height}:{left}:{top},"
            f"scale={IMAGE_SIZE[1]}:{IMAGE_SIZE[0]}:flags=bilinear{flip},format=rgb24"
        )
        frames = spdl.io.decode_packets(packets, filter_desc=graph)
        image = spdl.io.to_numpy(spdl.io.convert_frames(frames)).reshape((*IMAGE_SIZE, 3))
        return image, label

    return load


def _collate(samples: list[tuple[np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray]:
    images, labels = zip(*samples, strict=True)
    return np.stack(images), np.asarray(labels, np.int32)


def run_spdl(cfg: RunConfig) -> dict[str, object]:
    """Every image once an epoch, shuffled, in batches of 64; ``{"absent": why}`` without SPDL."""
    try:
        import spdl.io
        from spdl.pipeline import PipelineBuilder
    except (ImportError, OSError) as exc:  # OSError: FFmpeg's libraries missing
        return {"absent": f"SPDL is not usable ({type(exc).__name__}: {exc})"}
    paths, labels = read_manifest(cfg.manifest_path)
    try:  # SPDL binds FFmpeg at first use; without its libraries every image fails, one by one
        spdl.io.demux_image(paths[0])
    except RuntimeError as exc:
        return {"absent": f"SPDL cannot load FFmpeg's libraries ({exc})"}
    load = _loader(cfg.seed)
    cores = machine_cores()
    epochs = 0

    def epoch() -> tuple[int, int, float]:
        nonlocal epochs
        order = np.random.default_rng([cfg.seed, epochs]).permutation(len(paths))
        epochs += 1
        pipeline = (
            PipelineBuilder()
            .add_source([(int(i), paths[i], labels[i]) for i in order])
            .pipe(load, concurrency=cores, output_order="input")
            .aggregate(BATCH_SIZE)
            .pipe(_collate)
            .add_sink(2)
            .build(num_threads=cores)
        )
        images = batches = 0
        last = 0.0
        with pipeline.auto_stop():
            for x, _labels in pipeline:
                images += len(x)
                batches += 1
                last = time.perf_counter()
        if images != len(order):  # SPDL's pipeline logs a failed item and goes on without it
            raise RuntimeError(
                f"SPDL delivered {images} of {len(order)} images; the log above says why"
            )
        return images, batches, last

    return timed_epochs(epoch, warmup=cfg.warmup, runs=cfg.runs).summary()

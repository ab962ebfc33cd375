"""zerofeed's own per-image work on one core, in-process: ``Renderer.render_into`` in a loop."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bench.config import AUGMENT, BATCH_SIZE, IMAGE_SIZE, RunConfig
from bench.measure import timed_epochs
from bench.pipelines.manifest import read_manifest
from zerofeed.common.plan import sample_rng
from zerofeed.common.transforms import parse_augment
from zerofeed.producer.render import Renderer

__all__ = ["run_raw"]

_WARMUP_IMAGES = 128


def run_raw(cfg: RunConfig) -> dict[str, object]:
    """Render every image of the manifest into a batch buffer, one after another."""
    renderer = Renderer(image_size=IMAGE_SIZE, spec=parse_augment(AUGMENT))
    paths = [Path(path) for path in read_manifest(cfg.manifest_path)[0]]
    batch = np.empty((BATCH_SIZE, *IMAGE_SIZE, 3), np.uint8)

    def render(count: int) -> tuple[int, int, float]:
        for row, path in enumerate(paths[:count]):
            renderer.render_into(path, sample_rng(cfg.seed, 0, row), batch[row % BATCH_SIZE])
        return count, -(-count // BATCH_SIZE), time.perf_counter()

    render(_WARMUP_IMAGES)  # nothing to start up: a few images warm the code paths
    return timed_epochs(lambda: render(len(paths)), warmup=0, runs=cfg.runs).summary()

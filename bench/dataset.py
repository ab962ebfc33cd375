"""The benchmark's data set: photo-like JPEGs in 10 class folders, plus CSV manifests.

Image ``i`` is a pure function of ``(seed, i)``, so a data set of ``n`` images is the first ``n``
of an endless series: the 4x data set reuses the default one's files, and files already on disk
(under ``bench/data/``, git-ignored) are never drawn again. Each image is a smooth two-colour
gradient with a low-frequency wave, a few shaded ellipses and rectangles, coarse texture and fine
sensor-like noise, saved as a baseline JPEG at quality 90 (``~90 KB`` at ``~500x400``).
"""

from __future__ import annotations

import functools
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["CLASSES", "DATA_DIR", "DatasetInfo", "ensure_dataset", "image_pixels"]

DATA_DIR = Path(__file__).resolve().parent / "data"
CLASSES = 10
QUALITY = 90
_VERSION = 1  # bump when the drawing changes: cached files of another version are not reused
_WIDTHS = (380, 640)
_ASPECTS = (4 / 3, 3 / 2, 5 / 4, 16 / 10, 1.0, 3 / 4, 4 / 3, 3 / 2)
_BANK = 1024
_FINE_SIGMA = 12.5
_COARSE_SIGMA = 10.0


@dataclass(frozen=True)
class DatasetInfo:
    """A manifest and what its images are like."""

    manifest: Path
    images: int
    mean_bytes: float
    mean_width: float
    mean_height: float
    generated: int
    seconds: float


def image_pixels(seed: int, index: int) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 pixels of image ``index``.

    Drawing happens on a planar ``(3, H, W)`` float32 canvas: numpy broadcasts a colour over a
    leading axis far faster than over a trailing axis of length 3.
    """
    rng = np.random.default_rng([seed, index, _VERSION])
    width = int(rng.integers(_WIDTHS[0], _WIDTHS[1] + 1))
    height = round(width / _ASPECTS[int(rng.integers(len(_ASPECTS)))])
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    canvas = _background(rng, x, y)
    for _ in range(int(rng.integers(3, 8))):
        _draw_shape(rng, canvas, x, y)
    _add_noise(rng, canvas)
    np.clip(canvas, 0, 255, out=canvas)
    return np.ascontiguousarray(canvas.astype(np.uint8).transpose(1, 2, 0))


def _background(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A linear gradient between two colours in a random direction, with a soft wave."""
    angle = float(rng.uniform(0, 2 * np.pi))
    t = np.float32(np.cos(angle)) * x + np.float32(np.sin(angle)) * y
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    a, b = _colour(rng), _colour(rng)
    fx, fy = (np.float32(f * 2 * np.pi) for f in rng.uniform(2, 8, 2))
    px, py = (np.float32(p) for p in rng.uniform(0, 2 * np.pi, 2))
    wave = np.sin(fx * x + px) * np.sin(fy * y + py) * np.float32(18.0)
    canvas = np.empty((3, *t.shape), np.float32)
    for channel in range(3):
        np.multiply(t, b[channel] - a[channel], out=canvas[channel])
        canvas[channel] += wave + a[channel]
    return canvas


def _draw_shape(rng: np.random.Generator, canvas: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
    """Blend a shaded ellipse or rectangle into ``canvas`` (soft-edged, semi-opaque)."""
    height, width = canvas.shape[1:]
    cx, cy = (float(v) for v in rng.uniform(0, 1, 2))
    rx, ry = (float(v) for v in rng.uniform(0.05, 0.3, 2))
    colour = _colour(rng)
    ellipse = rng.random() < 0.6
    opacity = np.float32(rng.uniform(0.6, 1.0))
    rows = slice(max(0, int((cy - ry) * height)), min(height, int((cy + ry) * height) + 2))
    cols = slice(max(0, int((cx - rx) * width)), min(width, int((cx + rx) * width) + 2))
    dy = np.abs(y[rows] - np.float32(cy)) / np.float32(ry)
    dx = np.abs(x[:, cols] - np.float32(cx)) / np.float32(rx)
    dist = np.sqrt(dx * dx + dy * dy) if ellipse else np.maximum(dx, dy)
    mask = np.clip((1 - dist) * np.float32(8), 0, 1) * opacity
    shade = 1 - np.float32(0.35) * np.minimum(dist, 1)
    for channel in range(3):
        region = canvas[channel, rows, cols]
        region += mask * (colour[channel] * shade - region)


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3).astype(np.float32)


@functools.cache
def _noise_bank() -> tuple[np.ndarray, np.ndarray]:
    """Fine sensor-like noise and coarse grain, drawn once per process, cut at random offsets."""
    rng = np.random.default_rng(12345)
    fine = rng.standard_normal((3, _BANK, _BANK), dtype=np.float32) * np.float32(_FINE_SIGMA)
    small = rng.standard_normal((_BANK // 4, _BANK // 4), dtype=np.float32)
    coarse = np.repeat(np.repeat(small, 4, axis=0), 4, axis=1)
    coarse = (coarse + np.roll(coarse, 2, axis=0) + np.roll(coarse, 2, axis=1)) / 3
    return fine, coarse * np.float32(_COARSE_SIGMA)


def _add_noise(rng: np.random.Generator, canvas: np.ndarray) -> None:
    """Add fine per-channel noise and a coarse grain shared by the channels."""
    height, width = canvas.shape[1:]
    fine, coarse = _noise_bank()
    top, left, top2, left2 = (int(v) for v in rng.integers(0, _BANK - max(height, width), 4))
    canvas += fine[:, top : top + height, left : left + width]
    canvas += coarse[top2 : top2 + height, left2 : left2 + width]


def _path(root: Path, index: int) -> Path:
    return root / f"class_{index % CLASSES}" / f"{index:06d}.jpg"


def _write_range(root: str, seed: int, indices: list[int]) -> None:
    """Draw and save the images ``indices`` (atomically: a temporary name, then a rename)."""
    for index in indices:
        path = _path(Path(root), index)
        temp = path.with_suffix(".tmp")
        Image.fromarray(image_pixels(seed, index)).save(temp, "JPEG", quality=QUALITY)
        os.replace(temp, path)


def ensure_dataset(images: int, *, seed: int = 0, workers: int | None = None) -> DatasetInfo:
    """Make (or reuse) the first ``images`` images for ``seed`` and their manifest.

    Returns the manifest's path and the real mean file size and dimensions.
    """
    start = time.perf_counter()
    root = DATA_DIR / f"photos-v{_VERSION}-seed{seed}"
    for label in range(CLASSES):
        (root / f"class_{label}").mkdir(parents=True, exist_ok=True)
    missing = [i for i in range(images) if not _path(root, i).exists()]
    if missing:
        workers = workers or os.cpu_count() or 1
        chunks = [missing[k::workers] for k in range(workers)]
        with ProcessPoolExecutor(workers) as pool:
            for future in [pool.submit(_write_range, str(root), seed, c) for c in chunks]:
                future.result()
    manifest = root / f"manifest-{images}.csv"
    rows = [f"{_path(root, i).relative_to(root).as_posix()},{i % CLASSES}" for i in range(images)]
    manifest.write_text("path,label\n" + "\n".join(rows) + "\n")
    return _describe(root, manifest, images, len(missing), time.perf_counter() - start)


def _describe(
    root: Path, manifest: Path, images: int, generated: int, seconds: float
) -> DatasetInfo:
    sizes, widths, heights = [], [], []
    for index in range(images):
        path = _path(root, index)
        sizes.append(path.stat().st_size)
        if index < 500:  # dimensions from a sample: reading every header is slow on a cold cache
            with Image.open(path) as image:
                widths.append(image.width)
                heights.append(image.height)
    return DatasetInfo(
        manifest=manifest,
        images=images,
        mean_bytes=float(np.mean(sizes)),
        mean_width=float(np.mean(widths)),
        mean_height=float(np.mean(heights)),
        generated=generated,
        seconds=seconds,
    )

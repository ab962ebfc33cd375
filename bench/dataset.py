"""The benchmark's data sets: photo-like images in 10 class folders, plus CSV manifests.

Image ``i`` is a pure function of ``(seed, i)``, so a data set of ``n`` images is the first ``n``
of an endless series: the 4x data set reuses the default one's files, and files already on disk
(under ``bench/data/``, git-ignored) are never drawn again. Each image is a smooth two-colour
gradient with a low-frequency wave, a few shaded ellipses and rectangles, coarse texture and fine
sensor-like noise. Three kinds (``ensure_dataset(kind=...)``, ``./dev bench --set``):

- ``photos`` (the default): baseline 4:2:0 JPEGs at quality 90, ``~90 KB`` at ``~500x400``.
- ``large``: the same drawing at 2-4 megapixels (a phone or DSLR photo), baseline 4:2:0 JPEG at
  quality 90, ``~1.5 MB``: where decoding at a reduced DCT scale pays.
- ``mixed``: ``photos``-sized images in turn as a baseline 4:2:0 JPEG, a progressive JPEG, a
  greyscale JPEG, a 4:4:4 JPEG, an RGB PNG and a CMYK JPEG (what real data sets hold besides
  the common case).
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

__all__ = ["CLASSES", "DATA_DIR", "KINDS", "DatasetInfo", "ensure_dataset", "image_pixels"]

DATA_DIR = Path(__file__).resolve().parent / "data"
CLASSES = 10
QUALITY = 90
_VERSION = 1  # bump when the drawing changes: cached files of another version are not reused
_WIDTHS = (380, 640)
_ASPECTS = (4 / 3, 3 / 2, 5 / 4, 16 / 10, 1.0, 3 / 4, 4 / 3, 3 / 2)
_BANK = 1024
_LARGE_MEGAPIXELS = (2.0, 4.0)
_LARGE_ASPECTS = (4 / 3, 3 / 2, 3 / 4, 2 / 3, 16 / 9)
# The mixed set's formats, image i taking _MIXED[i % 6]: (suffix, Pillow mode, save options).
_MIXED: tuple[tuple[str, str, dict[str, object]], ...] = (
    ("jpg", "RGB", {"quality": QUALITY}),
    ("jpg", "RGB", {"quality": QUALITY, "progressive": True}),
    ("jpg", "L", {"quality": QUALITY}),
    ("jpg", "RGB", {"quality": QUALITY, "subsampling": 0}),
    ("png", "RGB", {"compress_level": 6}),
    ("jpg", "CMYK", {"quality": QUALITY}),
)
KINDS = ("photos", "large", "mixed")
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


def image_pixels(seed: int, index: int, kind: str = "photos") -> np.ndarray:
    """The ``(H, W, 3)`` uint8 pixels of image ``index`` of a data set of ``kind``.

    Drawing happens on a planar ``(3, H, W)`` float32 canvas: numpy broadcasts a colour over a
    leading axis far faster than over a trailing axis of length 3.
    """
    if kind == "large":
        rng = np.random.default_rng([seed, index, _VERSION, 1])
        aspect = _LARGE_ASPECTS[int(rng.integers(len(_LARGE_ASPECTS)))]
        pixels = float(rng.uniform(*_LARGE_MEGAPIXELS)) * 1e6
        width = round((pixels * aspect) ** 0.5)
        height = round(width / aspect)
    else:  # photos, and the mixed set's images (the same drawing, saved in other formats)
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
    coarse = (coarse + np.roll(coarse, 2, axis=0) + np.roll(coarse, 2, axis=1)) / np.float32(3)
    return fine, coarse * np.float32(_COARSE_SIGMA)


def _add_noise(rng: np.random.Generator, canvas: np.ndarray) -> None:
    """Add fine per-channel noise and a coarse grain shared by the channels."""
    height, width = canvas.shape[1:]
    fine, coarse = _noise_bank()
    if max(height, width) < _BANK:
        top, left, top2, left2 = (int(v) for v in rng.integers(0, _BANK - max(height, width), 4))
        canvas += fine[:, top : top + height, left : left + width]
        canvas += coarse[top2 : top2 + height, left2 : left2 + width]
        return
    # Larger than the bank: tile it from random offsets (band by band, to bound the memory).
    top, left, top2, left2 = (int(v) for v in rng.integers(0, _BANK, 4))
    columns = (left + np.arange(width)) % _BANK
    columns2 = (left2 + np.arange(width)) % _BANK
    for start in range(0, height, 256):
        rows = (top + np.arange(start, min(height, start + 256))) % _BANK
        rows2 = (top2 + np.arange(start, min(height, start + 256))) % _BANK
        band = canvas[:, start : start + len(rows)]
        band += fine[:, rows][:, :, columns]
        band += coarse[rows2][:, columns2]


def _format(kind: str, index: int) -> tuple[str, str, dict[str, object]]:
    """File suffix, Pillow mode and save options of image ``index``."""
    return _MIXED[index % len(_MIXED)] if kind == "mixed" else _MIXED[0]


def _path(root: Path, index: int, kind: str = "photos") -> Path:
    suffix = _format(kind, index)[0]
    return root / f"class_{index % CLASSES}" / f"{index:06d}.{suffix}"


def _write_range(root: str, seed: int, kind: str, indices: list[int]) -> None:
    """Draw and save the images ``indices`` (atomically: a temporary name, then a rename)."""
    for index in indices:
        path = _path(Path(root), index, kind)
        suffix, mode, options = _format(kind, index)
        temp = path.with_suffix(".tmp")
        image = Image.fromarray(image_pixels(seed, index, kind)).convert(mode)
        image.save(temp, "PNG" if suffix == "png" else "JPEG", **options)
        os.replace(temp, path)


def ensure_dataset(
    images: int, *, seed: int = 0, kind: str = "photos", workers: int | None = None
) -> DatasetInfo:
    """Make (or reuse) the first ``images`` images of ``kind`` for ``seed`` and their manifest.

    Returns the manifest's path and the real mean file size and dimensions.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    start = time.perf_counter()
    root = DATA_DIR / f"{kind}-v{_VERSION}-seed{seed}"
    for label in range(CLASSES):
        (root / f"class_{label}").mkdir(parents=True, exist_ok=True)
    missing = [i for i in range(images) if not _path(root, i, kind).exists()]
    if missing:
        workers = workers or os.cpu_count() or 1
        chunks = [missing[k::workers] for k in range(workers)]
        with ProcessPoolExecutor(workers) as pool:
            for future in [pool.submit(_write_range, str(root), seed, kind, c) for c in chunks]:
                future.result()
    manifest = root / f"manifest-{images}.csv"
    rows = [
        f"{_path(root, i, kind).relative_to(root).as_posix()},{i % CLASSES}" for i in range(images)
    ]
    manifest.write_text("path,label\n" + "\n".join(rows) + "\n")
    return _describe(root, kind, manifest, images, len(missing), time.perf_counter() - start)


def _describe(
    root: Path, kind: str, manifest: Path, images: int, generated: int, seconds: float
) -> DatasetInfo:
    sizes, widths, heights = [], [], []
    for index in range(images):
        path = _path(root, index, kind)
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

"""The geometry of one sample: where the crop is, which part of the file to decode, at what scale.

Pure arithmetic, no pixels: :mod:`~zerofeed.producer.render` draws a crop box on the upright
image (:func:`random_resized_crop`), maps it onto the image as stored (:func:`to_raw_box`, for EXIF
orientations), picks libjpeg's reduced decoding scale (:func:`draft_scale`) and the window of the
scaled image that resizing the box reads (:func:`read_window`);
:mod:`~zerofeed.producer.decode` decodes that window.
"""

from __future__ import annotations

import math

import numpy as np

from zerofeed.common.transforms import CropSpec

__all__ = [
    "Box",
    "Window",
    "draft_scale",
    "random_resized_crop",
    "read_window",
    "scaled_size",
    "to_raw_box",
]

Box = tuple[float, float, float, float]
"""``(left, top, right, bottom)`` in pixels, fractional edges allowed (a resize's source box)."""
Window = tuple[int, int, int, int]
"""``(left, top, right, bottom)`` in whole pixels of an image decoded at some scale."""

_CROP_ATTEMPTS = 10
_DRAFT_SCALES = (8, 4, 2)


def random_resized_crop(
    size: tuple[int, int], crop: CropSpec, rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """torchvision's ``RandomResizedCrop.get_params`` on an image of ``size = (width, height)``.

    Up to 10 tries draw an area fraction in ``crop.scale`` and a log-uniform aspect ratio in
    ``crop.ratio``; the first box that fits gets a uniform position. Otherwise the largest centred
    box with the aspect ratio clamped to ``crop.ratio``.

    Returns:
        ``(left, top, width, height)`` in pixels.
    """
    width, height = size
    area = width * height
    log_lo, log_hi = math.log(crop.ratio[0]), math.log(crop.ratio[1])
    for _ in range(_CROP_ATTEMPTS):
        target_area = area * rng.uniform(crop.scale[0], crop.scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return (left, top, w, h)
    return _center_crop(width, height, crop.ratio)


def _center_crop(width: int, height: int, ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    in_ratio = width / height
    w, h = width, height
    if in_ratio < ratio[0]:
        h = max(1, round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        w = max(1, round(h * ratio[1]))
    return ((width - w) // 2, (height - h) // 2, w, h)


def to_raw_box(box: Box, orientation: int, raw_size: tuple[int, int]) -> Box:
    """Map a ``(left, top, right, bottom)`` box on the upright image onto the stored image.

    ``raw_size`` is the stored ``(width, height)``. Resizing the stored image over the returned box
    and then :func:`orient`-ing the result gives the upright crop (orientations 5..8 swap width
    and height).
    """
    left, top, right, bottom = box
    width, height = raw_size
    boxes: tuple[Box, ...] = (
        box,
        box,
        (width - right, top, width - left, bottom),
        (width - right, height - bottom, width - left, height - top),
        (left, height - bottom, right, height - top),
        (top, left, bottom, right),
        (top, height - right, bottom, height - left),
        (width - bottom, height - right, width - top, height - left),
        (width - bottom, left, width - top, right),
    )
    return boxes[orientation]


def draft_scale(region: tuple[float, float], out_size: tuple[int, int]) -> int:
    """The largest libjpeg scale-down (8, 4, 2 or 1) that keeps ``region`` at least ``out_size``.

    ``region`` is the ``(width, height)`` of the part of the image that will be resized to
    ``out_size`` (both in the same orientation), so the output never loses resolution.
    """
    room = min(region[0] / out_size[0], region[1] / out_size[1])
    return next((s for s in _DRAFT_SCALES if s <= room), 1)


def scaled_size(size: tuple[int, int], scale: int) -> tuple[int, int]:
    """The size libjpeg (and Pillow's :func:`draft`) decodes ``size`` to at ``1 / scale``."""
    return (-(-size[0] // scale), -(-size[1] // scale))


def read_window(
    box: Box, scale: int, stored_size: tuple[int, int], out_size: tuple[int, int]
) -> tuple[Window, Box]:
    """The part of the image decoded at ``1 / scale`` that resizing ``box`` reads, and ``box`` in it.

    The window adds to the scaled box the reach of the resampling filter (one output pixel's
    worth of input either side) plus two pixels, clipped to the image: Pillow never reads
    beyond that, so resizing the window gives the pixels of resizing the whole image.
    """
    width, height = scaled_size(stored_size, scale)
    left, top, right, bottom = (edge / scale for edge in box)
    reach_x = math.ceil(max(1.0, (right - left) / out_size[0])) + 2
    reach_y = math.ceil(max(1.0, (bottom - top) / out_size[1])) + 2
    x0, y0 = max(0, math.floor(left) - reach_x), max(0, math.floor(top) - reach_y)
    x1, y1 = min(width, math.ceil(right) + reach_x), min(height, math.ceil(bottom) + reach_y)
    return (x0, y0, x1, y1), (left - x0, top - y0, right - x0, bottom - y0)

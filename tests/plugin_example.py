"""An example zerofeed plugin: load it with ``--plugin tests.plugin_example``.

A plugin is any importable module with a module-level ``ZEROFEED_TRANSFORMS`` mapping names to
``fn(image, rng, **params)``. ``image`` is an RGB PIL image of the output size; return a PIL RGB
image or an ``(H, W, 3)`` uint8 array of the same size. Draw randomness only from ``rng``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageOps


def invert(
    image: Image.Image, rng: np.random.Generator, *, probability: float = 1.0
) -> Image.Image:
    """Invert the colours (with the given probability, drawn from ``rng``)."""
    if probability < 1.0 and rng.random() >= probability:
        return image
    return ImageOps.invert(image)


def posterize(image: Image.Image, rng: np.random.Generator, *, bits: int = 4) -> np.ndarray:
    """Keep the top ``bits`` bits of every channel; returns an array (which is allowed too)."""
    mask = np.uint8((0xFF << (8 - bits)) & 0xFF)
    return np.asarray(image) & mask


ZEROFEED_TRANSFORMS: dict[str, Callable[..., Image.Image | np.ndarray]] = {
    "invert": invert,
    "posterize": posterize,
}

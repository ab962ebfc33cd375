"""A plugin whose transform takes a set time: producers slowed on purpose, for the monitor tests."""

from __future__ import annotations

import time

import numpy as np
from PIL import Image


def pause(image: Image.Image, rng: np.random.Generator, *, seconds: float = 0.0) -> Image.Image:
    """Return the image unchanged after ``seconds``."""
    time.sleep(seconds)
    return image


ZEROFEED_TRANSFORMS = {"pause": pause}

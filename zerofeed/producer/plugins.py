"""User transforms from plugin modules, as producers call them.

The loader lives in :mod:`zerofeed.common.plugins` (a consumer checks plugins too); this module
adds the callable's type. A plugin is an importable module with a module-level mapping ``ZEROFEED_TRANSFORMS`` from a
transform name to a callable::

    # mytransforms.py
    def sepia(image, rng, *, strength=1.0):
        ...  # return a PIL RGB image (or an (H, W, 3) uint8 array) of the same size

    ZEROFEED_TRANSFORMS = {"sepia": sepia}

Producers started with ``--plugin mytransforms`` call :func:`load_plugins`, and a spec's
``{"custom": {"sepia": {"strength": 0.5}}}`` then calls ``sepia(image, rng, strength=0.5)``. There
is no global registry: the returned dict is the only record of what was loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

import numpy as np
from PIL import Image

from zerofeed.common.plugins import PLUGIN_ATTRIBUTE, load_plugins

__all__ = ["PLUGIN_ATTRIBUTE", "CustomTransform", "load_plugins"]

CustomTransform: TypeAlias = Callable[..., "Image.Image | np.ndarray"]
"""``fn(image, rng, **params)``: ``image`` is an RGB PIL image of the output size, ``rng`` a
``numpy.random.Generator`` (draw from it, never from global state, to stay deterministic); returns a
PIL RGB image or an ``(H, W, 3)`` uint8 array of the same size."""

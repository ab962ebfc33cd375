"""A plugin whose transform crashes the whole worker process (a segfault, as a broken native
decoder would) on one marked image (tests/test_crashproof.py)."""

import ctypes

import numpy as np


def crash_on_marked(image, rng):  # type: ignore[no-untyped-def]
    pixels = np.asarray(image)
    if pixels[pixels.shape[0] // 2, pixels.shape[1] // 2, 2] == 199:  # the marked image's blue
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    return image


ZEROFEED_TRANSFORMS = {"crash_on_marked": crash_on_marked}

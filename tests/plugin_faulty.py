"""A plugin whose transform fails on one image with a very long message
(tests/test_crashproof.py): the result must still arrive, its reason cut short."""

import numpy as np


def fail_on_marked(image, rng):  # type: ignore[no-untyped-def]
    pixels = np.asarray(image)
    if pixels[pixels.shape[0] // 2, pixels.shape[1] // 2, 2] == 199:  # the marked image's blue
        raise RuntimeError("this image is marked as bad. " + "a very long explanation " * 500)
    return image


ZEROFEED_TRANSFORMS = {"fail_on_marked": fail_on_marked}

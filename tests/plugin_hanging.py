"""A plugin that hangs on one marked image beyond the reach of the per-sample timeout (SIGALRM
blocked), as a read from unresponsive storage in uninterruptible sleep would
(tests/test_deadlines.py)."""

import signal
import time

import numpy as np


def hang_on_marked(image, rng):  # type: ignore[no-untyped-def]
    pixels = np.asarray(image)
    if pixels[pixels.shape[0] // 2, pixels.shape[1] // 2, 2] == 199:  # the marked image's blue
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(600)
    return image


ZEROFEED_TRANSFORMS = {"hang_on_marked": hang_on_marked}

"""A plugin that imports in the trainer but not in a producer process (tests/test_local_failures.py):
the trainer's own check passes, and the producer then exits with its own message."""

import sys

if any("zerofeed" in part and "producer" in part for part in sys.argv[:1]):
    raise ImportError("this plugin refuses to load in a producer (on purpose, for a test)")


def invert(image, rng):  # type: ignore[no-untyped-def]
    return image


ZEROFEED_TRANSFORMS = {"invert": invert}

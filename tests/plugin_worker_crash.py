"""A plugin that imports in the trainer and in a producer's supervisor, but not in its worker
processes (tests/test_local_failures.py): every worker crashes at start, again and again."""

import multiprocessing

if multiprocessing.parent_process() is not None:
    raise ImportError("this plugin refuses to load in a worker process (on purpose, for a test)")


def invert(image, rng):  # type: ignore[no-untyped-def]
    return image


ZEROFEED_TRANSFORMS = {"invert": invert}

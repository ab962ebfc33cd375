"""zerofeed: a ``FeedSequence`` with local producers, iterated by hand or through ``model.fit``."""

from __future__ import annotations

import time
from collections.abc import Callable

from bench.config import AUGMENT, BATCH_SIZE, IMAGE_SIZE, MAX_QUEUE_SIZE, RunConfig
from bench.measure import timed_epochs
from bench.pipelines.fit import fit_epochs
from zerofeed.consumer import FeedSequence

__all__ = ["run_feed_fit", "run_feed_iterate"]


def _sequence(cfg: RunConfig, source: str | None = None) -> FeedSequence:
    return FeedSequence(
        source or cfg.manifest,
        batch_size=BATCH_SIZE,
        image_size=IMAGE_SIZE,
        augment=AUGMENT,
        local_producers=cfg.producers,
        max_queue_size=MAX_QUEUE_SIZE,
        seed=cfg.seed,
    )


def run_feed_iterate(
    cfg: RunConfig, *, source: str | None = None, requests: Callable[[], int] | None = None
) -> dict[str, object]:
    """``seq[i]`` for every ``i``, then ``on_epoch_end()``, as a training loop would.

    ``source`` replaces the data set's manifest (the same images elsewhere); ``requests`` counts
    the requests a server has answered, reported per image of the last epoch (the next epoch's
    prefetch at its end stands in for what the previous one prefetched at its start).
    """
    started = time.perf_counter()
    per_image: list[float] = []
    with _sequence(cfg, source) as seq:
        setup = time.perf_counter() - started

        def epoch() -> tuple[int, int, float]:
            images = 0
            before = requests() if requests is not None else 0
            for index in range(len(seq)):
                images += len(seq[index][0])
            last = time.perf_counter()
            if requests is not None:
                per_image.append((requests() - before) / max(images, 1))
            seq.on_epoch_end()
            return images, len(seq), last

        times = timed_epochs(epoch, warmup=cfg.warmup, runs=cfg.runs)
        stats = seq.stats
        shared = seq.shared_memory_bytes
    return {
        "shared_memory_bytes": shared,
        **times.summary(),
        "setup_s": setup,
        "wait_s": stats.wait_seconds,
        "tasks_reissued": stats.tasks_reissued,
        "peak_outstanding": stats.peak_outstanding,
        "skipped": len(stats.skipped),
        **({"requests_per_image": per_image[-1]} if per_image else {}),
    }


def run_feed_fit(cfg: RunConfig) -> dict[str, object]:
    """``model.fit(seq)`` of the trivial model; epochs timed by a callback."""
    with _sequence(cfg) as seq:
        result = fit_epochs(seq, images=len(seq.manifest), warmup=cfg.warmup, runs=cfg.runs)
        return {**result, "shared_memory_bytes": seq.shared_memory_bytes}

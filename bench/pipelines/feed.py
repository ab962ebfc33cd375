"""zerofeed: a ``FeedSequence`` with local producers, iterated by hand or through ``model.fit``."""

from __future__ import annotations

import time

from bench.config import AUGMENT, BATCH_SIZE, IMAGE_SIZE, MAX_QUEUE_SIZE, RunConfig
from bench.measure import timed_epochs
from bench.pipelines.fit import fit_epochs
from zerofeed.consumer import FeedSequence

__all__ = ["run_feed_fit", "run_feed_iterate"]


def _sequence(cfg: RunConfig) -> FeedSequence:
    return FeedSequence(
        cfg.manifest,
        batch_size=BATCH_SIZE,
        image_size=IMAGE_SIZE,
        augment=AUGMENT,
        local_producers=cfg.producers,
        max_queue_size=MAX_QUEUE_SIZE,
        seed=cfg.seed,
    )


def run_feed_iterate(cfg: RunConfig) -> dict[str, object]:
    """``seq[i]`` for every ``i``, then ``on_epoch_end()``, as a training loop would."""
    started = time.perf_counter()
    with _sequence(cfg) as seq:
        setup = time.perf_counter() - started

        def epoch() -> tuple[int, int, float]:
            images = 0
            for index in range(len(seq)):
                images += len(seq[index][0])
            last = time.perf_counter()
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
    }


def run_feed_fit(cfg: RunConfig) -> dict[str, object]:
    """``model.fit(seq)`` of the trivial model; epochs timed by a callback."""
    with _sequence(cfg) as seq:
        result = fit_epochs(seq, images=len(seq.manifest), warmup=cfg.warmup, runs=cfg.runs)
        return {**result, "shared_memory_bytes": seq.shared_memory_bytes}

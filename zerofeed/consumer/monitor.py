"""``FeedMonitor``: is training waiting for data? Per-epoch figures in Keras logs, and a hint."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import keras

from zerofeed.consumer.sequence import FeedSequence
from zerofeed.consumer.stats import FeedStats

__all__ = ["FeedMonitor"]

log = logging.getLogger("zerofeed.consumer")


class FeedMonitor(keras.callbacks.Callback):
    """Adds the feed's figures to each epoch's ``logs`` (and so to ``History``).

    Keys: ``feed_images_per_s`` (images delivered per second of the epoch), ``feed_wait_share``
    (share of the epoch's time ``__getitem__`` spent waiting for data), ``feed_producers``
    (producer workers connected, on average over the epoch), ``feed_reissued`` (tasks handed to
    another producer) and ``feed_skipped`` (bad samples). When the wait share passes
    ``input_bound_at``, it logs once per epoch how many more producer workers would saturate the
    model, from the measured rate per worker.

    Workers are averaged over the epoch's time, not counted at its end, so that producers
    coming, going or sizing themselves (``--max-workers``) during an epoch do not skew the rate
    per worker, and with it the advice.
    """

    def __init__(self, feed: FeedSequence, *, input_bound_at: float = 0.2) -> None:
        super().__init__()
        self.feed = feed
        self.input_bound_at = input_bound_at
        self._started = 0.0
        self._before = feed.stats

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.perf_counter()
        self._before = self.feed.stats

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        figures = epoch_figures(self._before, self.feed.stats, elapsed)
        if logs is not None:
            logs.update(figures)
        if figures["feed_wait_share"] >= self.input_bound_at:
            log.warning("epoch %d: %s", epoch + 1, advice(figures))


def epoch_figures(before: FeedStats, now: FeedStats, elapsed: float) -> dict[str, float]:
    """The ``feed_*`` figures of the ``elapsed`` seconds between two snapshots of a feed."""
    return {
        "feed_images_per_s": (now.images_delivered - before.images_delivered) / elapsed,
        "feed_wait_share": min(1.0, (now.wait_seconds - before.wait_seconds) / elapsed),
        "feed_producers": (now.producer_seconds - before.producer_seconds) / elapsed,
        "feed_reissued": float(now.tasks_reissued - before.tasks_reissued),
        "feed_skipped": float(now.samples_skipped - before.samples_skipped),
    }


def advice(figures: dict[str, float]) -> str:
    """What an input-bound epoch's figures suggest."""
    share, rate, workers = (
        figures["feed_wait_share"],
        figures["feed_images_per_s"],
        figures["feed_producers"],  # the epoch's mean: it may be fractional
    )
    text = f"input-bound: {100 * share:.0f} % of step time waiting for data"
    if workers > 0 and share < 1.0 and rate > 0:
        wanted = rate / (1.0 - share)  # what the model would take without waiting
        per_worker = rate / workers
        # wanted / per_worker - workers, rounded so that float noise cannot add a worker
        more = max(1, math.ceil(round(workers * share / (1.0 - share), 6)))
        text += (
            f"; ~{more} more producer worker(s) would saturate this model "
            f"({per_worker:.0f} images/s each now, the model takes ~{wanted:.0f})"
        )
    return text

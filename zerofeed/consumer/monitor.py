"""``FeedMonitor``: is training waiting for data? Per-epoch figures in Keras logs, and a hint."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import keras

from zerofeed.consumer.sequence import FeedSequence

__all__ = ["FeedMonitor"]

log = logging.getLogger("zerofeed.consumer")


class FeedMonitor(keras.callbacks.Callback):
    """Adds the feed's figures to each epoch's ``logs`` (and so to ``History``).

    Keys: ``feed_images_per_s`` (images delivered per second of the epoch), ``feed_wait_share``
    (share of the epoch's time ``__getitem__`` spent waiting for data), ``feed_producers``
    (producer workers connected), ``feed_reissued`` (tasks handed to another producer) and
    ``feed_skipped`` (bad samples). When the wait share passes ``input_bound_at``, it logs once
    per epoch how many more producer workers would saturate the model, from the measured rate per
    worker.
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
        now, before = self.feed.stats, self._before
        images = now.images_delivered - before.images_delivered
        waited = now.wait_seconds - before.wait_seconds
        figures = {
            "feed_images_per_s": images / elapsed,
            "feed_wait_share": min(1.0, waited / elapsed),
            "feed_producers": float(now.producers_connected),
            "feed_reissued": float(now.tasks_reissued - before.tasks_reissued),
            "feed_skipped": float(now.samples_skipped - before.samples_skipped),
        }
        if logs is not None:
            logs.update(figures)
        if figures["feed_wait_share"] >= self.input_bound_at:
            log.warning("epoch %d: %s", epoch + 1, advice(figures))


def advice(figures: dict[str, float]) -> str:
    """What an input-bound epoch's figures suggest."""
    share, rate, workers = (
        figures["feed_wait_share"],
        figures["feed_images_per_s"],
        int(figures["feed_producers"]),
    )
    text = f"input-bound: {100 * share:.0f} % of step time waiting for data"
    if workers and share < 1.0 and rate > 0:
        wanted = rate / (1.0 - share)  # what the model would take without waiting
        per_worker = rate / workers
        more = max(1, math.ceil(wanted / per_worker) - workers)
        text += (
            f"; ~{more} more producer worker(s) would saturate this model "
            f"({per_worker:.0f} images/s each now, the model takes ~{wanted:.0f})"
        )
    return text

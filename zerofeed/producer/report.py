"""A producer worker's throughput report: images/s, credits in use and time per stage."""

from __future__ import annotations

import logging
import threading
import time

from zerofeed.common.metrics import Metric
from zerofeed.producer.batch import BatchMaker

__all__ = ["ProducerReport"]

log = logging.getLogger("zerofeed.producer")


class ProducerReport:
    """Logs, every ``interval`` seconds or when ``requested`` is set, what the worker did since."""

    def __init__(
        self,
        name: str,
        maker: BatchMaker,
        *,
        interval: float,
        requested: threading.Event | None = None,
    ) -> None:
        self._name = name
        self._maker = maker
        self._interval = interval
        self._requested = requested or threading.Event()
        self._send_seconds = 0.0
        self._since = time.monotonic()
        self._last = self._snapshot()

    def add_send(self, seconds: float) -> None:
        """Time spent handing a result to the socket."""
        self._send_seconds += seconds

    def log_if_due(self, queued: int, credits: int) -> None:
        """Log the report if the interval has passed or one was requested (SIGUSR1)."""
        now = time.monotonic()
        due = self._interval > 0 and now - self._since >= self._interval
        if not (due or self._requested.is_set()):
            return
        self._requested.clear()
        current = self._snapshot()
        images = current["images"] - self._last["images"]
        per_image = {
            stage: 1000 * (current[stage] - self._last[stage]) / max(images, 1)
            for stage in ("read", "decode", "augment", "send")
        }
        log.info(
            "%s: %.0f images/s, %d batches, %d of %d credits queued; ms per image: read %.2f, "
            "decode %.2f, augment %.2f, send %.2f",
            self._name,
            images / max(now - self._since, 1e-9),
            current["batches"] - self._last["batches"],
            queued,
            credits,
            per_image["read"],
            per_image["decode"],
            per_image["augment"],
            per_image["send"],
        )
        self._since, self._last = now, current

    def metrics(self) -> list[Metric]:
        """Prometheus metrics of this worker (see docs/metrics.md)."""
        totals = self._snapshot()
        worker = (("worker", self._name),)
        return [
            ("zerofeed_producer_images", "counter", "Images made.", {worker: totals["images"]}),
            ("zerofeed_producer_batches", "counter", "Batches made.", {worker: totals["batches"]}),
            (
                "zerofeed_producer_stage_seconds",
                "counter",
                "Seconds spent per stage.",
                {
                    (*worker, ("stage", stage)): totals[stage]
                    for stage in ("read", "decode", "augment", "send")
                },
            ),
        ]

    def _snapshot(self) -> dict[str, float]:
        stages = self._maker.stage_seconds
        return {
            "images": float(self._maker.images_made),
            "batches": float(self._maker.batches_made),
            "read": stages.get("read", 0.0),
            "decode": stages.get("decode", 0.0),
            "augment": stages.get("augment", 0.0),
            "send": self._send_seconds,
        }

"""The consumer's Prometheus metrics, read from :class:`FeedStats` at each scrape."""

from __future__ import annotations

from zerofeed.common.metrics import Metric
from zerofeed.consumer.stats import FeedStats

__all__ = ["feed_metrics"]

# (metric name, FeedStats field, type, help)
_FIGURES = (
    ("zerofeed_batches_delivered", "batches_delivered", "counter", "Batches returned."),
    ("zerofeed_images_delivered", "images_delivered", "counter", "Images in those batches."),
    ("zerofeed_wait_seconds", "wait_seconds", "counter", "Seconds spent waiting for data."),
    ("zerofeed_producers_connected", "producers_connected", "gauge", "Producer workers now."),
    ("zerofeed_producer_seconds", "producer_seconds", "counter", "Worker-seconds connected."),
    ("zerofeed_tasks_issued", "tasks_issued", "counter", "Tasks sent to producers."),
    ("zerofeed_tasks_reissued", "tasks_reissued", "counter", "Tasks given to another producer."),
    ("zerofeed_producers_lost", "producers_lost", "counter", "Producers presumed lost."),
    ("zerofeed_messages_rejected", "messages_rejected", "counter", "Invalid messages refused."),
    ("zerofeed_connections_refused", "connections_refused", "counter", "Handshakes refused."),
    ("zerofeed_tasks_overdue", "tasks_overdue", "counter", "Tasks re-issued as overdue."),
    ("zerofeed_results_duplicate", "results_duplicate", "counter", "Late duplicates dropped."),
    ("zerofeed_producers_refused", "producers_refused", "gauge", "Producers given no tasks."),
    ("zerofeed_slots_quarantined", "slots_quarantined", "gauge", "Slots not lent again."),
    ("zerofeed_epoch", "epoch", "gauge", "The current epoch."),
)


def feed_metrics(stats: FeedStats) -> list[Metric]:
    """Every consumer metric, with bad samples counted by kind."""
    metrics: list[Metric] = [
        (name, kind, text, {(): float(getattr(stats, field))})
        for name, field, kind, text in _FIGURES
    ]
    by_kind: dict[tuple[tuple[str, str], ...], float] = {
        (("kind", kind),): float(count) for kind, count in stats.skipped_by_kind.items()
    }
    if by_kind:
        metrics.append(("zerofeed_samples_skipped", "counter", "Bad samples, by kind.", by_kind))
    return metrics

"""FeedMonitor's figures and advice from feed snapshots whose truth is known: a model that would
take 2,000 images/s, fed by producer workers that make 500 images/s each, while the producers
size themselves (``--max-workers``) during epochs."""

from __future__ import annotations

import re

import pytest

from zerofeed.consumer.monitor import advice, epoch_figures
from zerofeed.consumer.stats import FeedStats

MODEL_TAKES = 2000.0  # images/s the model would consume if never kept waiting
PER_WORKER = 500.0  # images/s one producer worker makes
EPOCH = 10.0  # seconds


def snapshot(*, images: float, waited: float, producer_seconds: float, connected: int) -> FeedStats:
    return FeedStats(
        batches_delivered=0,
        images_delivered=round(images),
        skipped=(),
        samples_skipped=0,
        skipped_by_kind={},
        wait_seconds=waited,
        producers_connected=connected,
        tasks_issued=0,
        tasks_reissued=0,
        producers_lost=0,
        messages_rejected=0,
        connections_refused=0,
        peak_outstanding=0,
        producer_seconds=producer_seconds,
        epoch=0,
    )


def epoch_with(spans: list[tuple[int, float]]) -> tuple[FeedStats, FeedStats]:
    """Snapshots around an epoch in which ``workers`` were connected for ``seconds``, span by
    span; the model computes while it has images and waits the rest of the time."""
    if sum(seconds for _, seconds in spans) != EPOCH:
        raise ValueError("the spans must fill the epoch")
    images = sum(workers * PER_WORKER * seconds for workers, seconds in spans)
    waited = EPOCH - images / MODEL_TAKES
    worker_seconds = sum(workers * seconds for workers, seconds in spans)
    before = snapshot(images=0, waited=0, producer_seconds=0, connected=spans[0][0])
    after = snapshot(
        images=images, waited=waited, producer_seconds=worker_seconds, connected=spans[-1][0]
    )
    return before, after


@pytest.mark.parametrize(
    ("spans", "connected_on_average", "more"),
    [
        ([(2, 10.0)], 2.0, 2),  # two workers all epoch
        ([(2, 8.0), (3, 2.0)], 2.2, 2),  # a third tried in the last 2 s, still there at the end
        ([(3, 2.0), (2, 8.0)], 2.2, 2),  # a try undone 2 s into the epoch
        ([(3, 10.0)], 3.0, 1),  # the third kept
    ],
    ids=["steady", "try at the end", "try undone", "grown"],
)
def test_the_advice_stays_the_same_while_producers_size_themselves(
    spans: list[tuple[int, float]], connected_on_average: float, more: int
) -> None:
    figures = epoch_figures(*epoch_with(spans), EPOCH)
    assert figures["feed_producers"] == pytest.approx(connected_on_average)
    text = advice(figures)
    # Whatever the workers did during the epoch, the advice measures 500 images/s per worker,
    # a model that takes 2,000, and so four workers in all.
    assert re.search(r"\((\d+) images/s each now", text)[1] == "500", text  # type: ignore[index]
    assert "the model takes ~2000" in text, text
    assert f"~{more} more producer worker(s)" in text, text
    assert round(connected_on_average + more) == MODEL_TAKES / PER_WORKER


def test_the_figures_are_the_epochs_differences() -> None:
    before = snapshot(images=1000, waited=3.0, producer_seconds=50.0, connected=2)
    after = snapshot(images=6000, waited=5.5, producer_seconds=70.0, connected=2)
    figures = epoch_figures(before, after, EPOCH)
    assert figures == {
        "feed_images_per_s": 500.0,
        "feed_wait_share": 0.25,
        "feed_producers": 2.0,
        "feed_reissued": 0.0,
        "feed_skipped": 0.0,
    }
    assert advice(figures).startswith("input-bound: 25 % of step time waiting for data; ~1 more")


def test_no_worker_figure_without_workers_or_progress() -> None:
    nothing = snapshot(images=0, waited=0, producer_seconds=0, connected=0)
    starved = snapshot(images=0, waited=EPOCH, producer_seconds=0, connected=0)
    text = advice(epoch_figures(nothing, starved, EPOCH))
    assert text == "input-bound: 100 % of step time waiting for data"

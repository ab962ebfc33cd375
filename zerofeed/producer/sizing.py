"""How many workers a producer runs: grown one at a time while each added one raises throughput.

``os.cpu_count()`` workers is right on an idle machine and wrong on a busy one: when another job
holds a core, the kernel shares the CPU between runnable threads, and one more worker than cores
wins the producer a fairer share (measured on 2 cores with a busy loop: 935 img/s with 2 workers,
1,054 with 3, 1,013 with 4). What is right depends on the load, so it is measured, not guessed:

- every ``window`` seconds the supervisor passes the images its workers made so far, the seconds
  they spent making them and the CPU seconds they got meanwhile (:class:`WorkerTally`);
- while the workers are busy (``busy`` of their time: the consumer takes all they make), there is
  room below ``high``, and either a core is free (fewer workers than ``cores``) or the workers
  wait for a CPU (``waiting`` of their busy time: other jobs hold cores; on an idle machine with
  a worker per core they get ~95 %, and one more would only take CPU from the trainer), one
  worker is added; after ``settle`` seconds (its start) and a window,
  it stays if images/s rose by ``gain``, else it is stopped again and no worker is added for a
  while (``backoff``, doubling after each failed try up to its last value; the load may change);
- workers idle because the consumer takes less (a model slower than the feed) are never added
  to, and the count never goes below ``low``.

:class:`WorkerSizer` is the decision alone, driven by the caller's clock, so tests can run it on
made-up figures; :class:`~zerofeed.producer.supervisor.Supervisor` starts and stops the workers.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

__all__ = ["SizingPolicy", "WorkerSizer", "WorkerTally"]

log = logging.getLogger("zerofeed.producer")


@dataclass(frozen=True, kw_only=True)
class SizingPolicy:
    """When :class:`WorkerSizer` adds a worker and when it keeps it.

    Attributes:
        window: seconds of each throughput measurement.
        settle: seconds a new worker gets to start before it is measured.
        gain: the rise in images/s (0.05: 5 %) that keeps an added worker.
        busy: the share of their time the workers must spend making batches before one is added.
        waiting: the share of that time they must wait for a CPU (not get it) before one is added
            beyond one per core.
        backoff: seconds without another try after a worker did not help, one value per failed
            try in a row (the last repeats).
    """

    window: float = 2.0
    settle: float = 2.0
    gain: float = 0.05
    busy: float = 0.85
    waiting: float = 0.15
    backoff: tuple[float, ...] = (20.0, 40.0, 80.0, 160.0)


@dataclass(frozen=True)
class WorkerTally:
    """What all the workers made so far: images, the seconds spent making them, and the CPU
    seconds their rendering threads got in that time."""

    images: float
    busy_seconds: float
    cpu_seconds: float


class _Phase(enum.Enum):
    MEASURING = "measuring"  # the current count, for a baseline
    SETTLING = "settling"  # an added worker starts
    TRYING = "trying"  # the count with the added worker, against the baseline
    RESTING = "resting"  # after a try that did not help


class WorkerSizer:
    """Decides the number of workers between ``low`` and ``high`` from measured throughput."""

    def __init__(
        self, *, low: int, high: int, cores: int, policy: SizingPolicy | None = None
    ) -> None:
        if not 1 <= low <= high:
            raise ValueError(f"need 1 <= low <= high, got {low} and {high}")
        self._cores = cores
        self._low = low
        self._high = high
        self._policy = policy or SizingPolicy()
        self.workers = low
        self._phase = _Phase.MEASURING
        self._since: float | None = None  # when the current phase's window began
        self._start = WorkerTally(0.0, 0.0, 0.0)
        self._baseline = 0.0  # images/s with self.workers - 1 while trying, else with workers
        self._failures = 0

    @property
    def adapts(self) -> bool:
        """Whether there is any room to decide (``high`` > ``low``)."""
        return self._high > self._low

    def update(self, now: float, tally: WorkerTally) -> int:
        """Take the workers' totals at time ``now``; returns the number of workers to run."""
        if not self.adapts:
            return self.workers
        if self._since is None:
            self._restart(now, tally)
            return self.workers
        elapsed = now - self._since
        if self._phase is _Phase.SETTLING:
            if elapsed >= self._policy.settle:
                self._phase = _Phase.TRYING
                self._restart(now, tally)
            return self.workers
        if self._phase is _Phase.RESTING:
            if elapsed >= self._rest_seconds():
                self._phase = _Phase.MEASURING
                self._restart(now, tally)
            return self.workers
        if elapsed < self._policy.window:
            return self.workers
        rate = (tally.images - self._start.images) / elapsed
        busy_seconds = tally.busy_seconds - self._start.busy_seconds
        busy = busy_seconds / (elapsed * self.workers)
        waiting = 1 - (tally.cpu_seconds - self._start.cpu_seconds) / max(busy_seconds, 1e-9)
        if self._phase is _Phase.TRYING:
            self._judge_try(now, tally, rate)
        else:
            self._baseline = rate
            self._restart(now, tally)
        room = self.workers < self._cores or waiting >= self._policy.waiting
        if (
            self._phase is _Phase.MEASURING
            and busy >= self._policy.busy
            and room
            and self.workers < self._high
        ):
            self.workers += 1
            self._phase = _Phase.SETTLING
            log.info(
                "workers busy %.0f %% of the time, waiting for a CPU %.0f %% of that, at %.0f "
                "images/s: trying %d workers",
                100 * busy,
                100 * max(waiting, 0.0),
                rate,
                self.workers,
            )
        return self.workers

    def _judge_try(self, now: float, tally: WorkerTally, rate: float) -> None:
        if rate >= self._baseline * (1 + self._policy.gain):
            log.info(
                "%d workers make %.0f images/s against %.0f with one fewer: keeping them",
                self.workers,
                rate,
                self._baseline,
            )
            self._failures = 0
            self._baseline = rate
            self._phase = _Phase.MEASURING
        else:
            self.workers -= 1
            self._phase = _Phase.RESTING
            log.info(
                "%d workers made %.0f images/s against %.0f with %d: back to %d for %.0f s",
                self.workers + 1,
                rate,
                self._baseline,
                self.workers,
                self.workers,
                self._rest_seconds(),
            )
            self._failures += 1
        self._restart(now, tally)

    def _rest_seconds(self) -> float:
        steps = self._policy.backoff
        return steps[min(max(self._failures - 1, 0), len(steps) - 1)] if steps else 0.0

    def _restart(self, now: float, tally: WorkerTally) -> None:
        self._since = now
        self._start = tally

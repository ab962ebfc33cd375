"""Epoch plans: which samples form batch ``i`` of epoch ``e``, and every sample's random stream.

Everything here is a pure function of ``(seed, epoch, ...)``: the consumer can plan any epoch ahead of
time, and every producer derives the same augmentation randomness for the same sample, so a batch is
byte-identical whichever producer makes it.
"""

from __future__ import annotations

import numpy as np

from zerofeed.common.errors import ConfigError

__all__ = ["EpochPlan", "check_rank", "largest_batch", "sample_rng", "steps_per_epoch"]


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random stream for sample ``index`` (its row in the manifest) in ``epoch``.

    It depends on nothing else: not on the batch, the producer, or how many producers there are.
    """
    return np.random.default_rng([seed, epoch, index])


class EpochPlan:
    """The batches of one epoch: ``plan.batch(i)`` holds the manifest rows of batch ``i``.

    With ``shuffle`` the order is a permutation drawn from ``(seed, epoch)``; without it, manifest
    order. The last batch may be smaller, as in Keras.

    With ``world_size`` ranks (data-parallel training), step ``i``'s *global* batch is
    ``world_size * batch_size`` samples of that same order, and rank ``rank`` gets its contiguous
    slice: the global batches are those of one rank with a ``world_size`` times larger batch, so
    scaling out changes no data, only who trains on it. Every rank has the same number of steps and
    every sample is in exactly one rank's batch. The last, short global batch is split as evenly as
    it goes (rank slices differ by at most one sample); when it holds fewer samples than there are
    ranks, some rank would get none, so it joins the step before instead (whose slices then hold
    ``batch_size`` or ``batch_size + 1`` samples). An epoch needs at least ``world_size`` samples.
    """

    __slots__ = ("_order", "_steps", "batch_size", "epoch", "rank", "world_size")

    def __init__(
        self,
        *,
        num_samples: int,
        batch_size: int,
        seed: int,
        epoch: int,
        shuffle: bool,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        check_rank(rank, world_size, num_samples)
        self.epoch = epoch
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self._steps = steps_per_epoch(num_samples, batch_size, world_size)
        if shuffle:
            # A spawn key keeps the shuffle's stream apart from every sample's (sample_rng).
            rng = np.random.default_rng(np.random.SeedSequence([seed, epoch], spawn_key=(1,)))
            self._order = rng.permutation(num_samples)
        else:
            self._order = np.arange(num_samples)

    def __len__(self) -> int:
        return self._steps

    def global_batch(self, index: int) -> np.ndarray:
        """Manifest rows of step ``index`` on all ranks together, rank 0's slice first."""
        self._check(index)
        start = index * self.batch_size * self.world_size
        end = None if index == self._steps - 1 else start + self.batch_size * self.world_size
        return self._order[start:end]

    def batch(self, index: int) -> np.ndarray:
        """Manifest rows of batch ``index`` of this plan's rank (int64 array)."""
        rows = self.global_batch(index)
        count, ranks = len(rows), self.world_size
        return rows[self.rank * count // ranks : (self.rank + 1) * count // ranks]

    def _check(self, index: int) -> None:
        if not 0 <= index < self._steps:
            raise IndexError(
                f"batch index {index} out of range for an epoch of {self._steps} batches"
            )


def steps_per_epoch(num_samples: int, batch_size: int, world_size: int = 1) -> int:
    """Batches per epoch on each of ``world_size`` ranks (see :class:`EpochPlan`)."""
    global_batch = batch_size * world_size
    steps = -(-num_samples // global_batch)
    last = num_samples - (steps - 1) * global_batch
    return steps - 1 if steps > 1 and last < world_size else steps


def largest_batch(num_samples: int, batch_size: int, world_size: int = 1) -> int:
    """The most samples any rank's batch holds: ``batch_size``, or one more when the short last
    global batch joined the step before it (see :class:`EpochPlan`)."""
    steps = steps_per_epoch(num_samples, batch_size, world_size)
    if steps == 1:
        return -(-num_samples // world_size)
    last = num_samples - (steps - 1) * batch_size * world_size
    return max(batch_size, -(-last // world_size))


def check_rank(rank: int, world_size: int, num_samples: int) -> None:
    """Raise :class:`ConfigError` unless ``rank`` of ``world_size`` can share ``num_samples``."""
    for name, value in (("rank", rank), ("world_size", world_size)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ConfigError(f"{name} must be a whole number, got {value!r}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(
            f"rank must be in 0..world_size-1 and world_size >= 1, got rank={rank} "
            f"world_size={world_size}"
        )
    if world_size > 1 and num_samples < world_size:
        raise ConfigError(
            f"{num_samples} sample(s) cannot be shared by {world_size} ranks: every rank needs "
            "at least one sample per epoch; use fewer ranks or more data"
        )

"""Epoch plans: which samples form batch ``i`` of epoch ``e``, and every sample's random stream.

Everything here is a pure function of ``(seed, epoch, ...)``: the consumer can plan any epoch ahead of
time, and every producer derives the same augmentation randomness for the same sample, so a batch is
byte-identical whichever producer makes it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["EpochPlan", "sample_rng"]


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random stream for sample ``index`` (its row in the manifest) in ``epoch``.

    It depends on nothing else: not on the batch, the producer, or how many producers there are.
    """
    return np.random.default_rng([seed, epoch, index])


class EpochPlan:
    """The batches of one epoch: ``plan.batch(i)`` holds the manifest rows of batch ``i``.

    With ``shuffle`` the order is a permutation drawn from ``(seed, epoch)``; without it, manifest
    order. The last batch may be smaller, as in Keras.
    """

    __slots__ = ("_order", "batch_size", "epoch")

    def __init__(
        self, *, num_samples: int, batch_size: int, seed: int, epoch: int, shuffle: bool
    ) -> None:
        self.epoch = epoch
        self.batch_size = batch_size
        if shuffle:
            # A spawn key keeps the shuffle's stream apart from every sample's (sample_rng).
            rng = np.random.default_rng(np.random.SeedSequence([seed, epoch], spawn_key=(1,)))
            self._order = rng.permutation(num_samples)
        else:
            self._order = np.arange(num_samples)

    def __len__(self) -> int:
        return -(-len(self._order) // self.batch_size)

    def batch(self, index: int) -> np.ndarray:
        """Manifest rows of batch ``index`` (int64 array)."""
        if not 0 <= index < len(self):
            raise IndexError(
                f"batch index {index} out of range for an epoch of {len(self)} batches"
            )
        start = index * self.batch_size
        return self._order[start : start + self.batch_size]

"""``BatchRecipe``: everything that decides a batch's bytes, as one plain object.

A batch of a feed is a pure function of its recipe and its ``(epoch, batch)`` position: the
manifest rows come from the epoch's plan (seed, epoch, shuffle, batch size), the pixels from the
paths, the output size, dtype and augmentation, and each sample's randomness from
``(seed, epoch, row)``. The dispatcher turns leases into tasks with :meth:`BatchRecipe.task`; the
feed's checkpoint state carries the recipe's :meth:`BatchRecipe.fingerprint`, so that a state is
only restored into a feed that makes the same batches.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zerofeed.common.manifest import Manifest
from zerofeed.common.plan import EpochPlan, largest_batch, steps_per_epoch
from zerofeed.common.protocol import MAX_HEADER_BYTES, Task

__all__ = ["BatchRecipe"]

_PLANS_KEPT = 4


@dataclass(frozen=True, kw_only=True, eq=False)
class BatchRecipe:
    """How the batches of one feed are made.

    Attributes:
        manifest: the samples.
        batch_size: samples per batch (the last batch of an epoch may be smaller).
        image_size: ``(height, width)`` of the images.
        dtype: ``"uint8"`` or ``"float32"``.
        augment: the validated transform spec in its wire form.
        seed: the seed of shuffle and augmentation.
        shuffle: a new order each epoch.
        label_mode: ``"int"`` or ``"categorical"``.
        custom_transforms: the plugin transforms ``augment`` needs.
        rank, world_size: which slice of every global batch this feed serves (data-parallel
            training; see :class:`~zerofeed.common.plan.EpochPlan`).
    """

    manifest: Manifest
    batch_size: int
    image_size: tuple[int, int]
    dtype: str
    augment: dict[str, Any]
    seed: int
    shuffle: bool
    label_mode: str
    custom_transforms: tuple[str, ...] = ()
    rank: int = 0
    world_size: int = 1
    _plans: dict[int, EpochPlan] = field(default_factory=dict, repr=False)

    @property
    def batches_per_epoch(self) -> int:
        """Batches in every epoch."""
        return steps_per_epoch(len(self.manifest), self.batch_size, self.world_size)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (*self.image_size, 3)

    @property
    def batch_bytes(self) -> int:
        """Bytes of the images of the largest batch."""
        height, width = self.image_size
        samples = largest_batch(len(self.manifest), self.batch_size, self.world_size)
        return samples * height * width * 3 * np.dtype(self.dtype).itemsize

    @property
    def max_message_size(self) -> int:
        """The largest result message a producer may send for this recipe."""
        return self.batch_bytes + MAX_HEADER_BYTES + 4096

    def plan(self, epoch: int) -> EpochPlan:
        """The plan of ``epoch`` (the last few are kept: they are asked for once per task)."""
        plan = self._plans.get(epoch)
        if plan is None:
            plan = EpochPlan(
                num_samples=len(self.manifest),
                batch_size=self.batch_size,
                seed=self.seed,
                epoch=epoch,
                shuffle=self.shuffle,
                rank=self.rank,
                world_size=self.world_size,
            )
            plans = dict(self._plans)
            plans[epoch] = plan
            while len(plans) > _PLANS_KEPT:
                plans.pop(min(plans))
            # One assignment: a reader on another thread sees either dict, never a torn one.
            object.__setattr__(self, "_plans", plans)
        return plan

    def task(
        self, *, task_id: int, epoch: int, batch: int, rows: np.ndarray, slot: int | None
    ) -> Task:
        """The task that makes batch ``batch`` of ``epoch`` from manifest ``rows``."""
        paths = self.manifest.producer_paths
        indices = rows.tolist()
        return Task(
            task_id=task_id,
            epoch=epoch,
            batch=batch,
            seed=self.seed,
            image_size=self.image_size,
            dtype=self.dtype,
            augment=self.augment,
            samples=tuple(zip(indices, [paths[row] for row in indices], strict=True)),
            slot=slot,
        )

    def labels(self, rows: np.ndarray) -> np.ndarray | None:
        """The labels of manifest ``rows``, as the model gets them (None when unlabeled)."""
        return self.manifest.batch_labels(rows, self.label_mode)

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must match to be restored here (JSON-serialisable)."""
        return {
            "manifest": self.manifest_digest(),
            "samples": len(self.manifest),
            "seed": self.seed,
            "shuffle": self.shuffle,
            "batch_size": self.batch_size,
            "image_size": list(self.image_size),
            "dtype": self.dtype,
            "augment": json.loads(json.dumps(self.augment, sort_keys=True)),
            "label_mode": self.label_mode,
            "rank": self.rank,
            "world_size": self.world_size,
        }

    def manifest_digest(self) -> str:
        """SHA-256 of the manifest's paths and labels, in order."""
        digest = hashlib.sha256()
        for path in self.manifest.paths:
            digest.update(path.encode("utf-8", "surrogateescape") + b"\0")
        labels = self.manifest.labels
        if labels is not None:
            digest.update(np.ascontiguousarray(labels).tobytes())
        return digest.hexdigest()

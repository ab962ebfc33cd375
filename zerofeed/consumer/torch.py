"""PyTorch adapter: a feed as an ``IterableDataset`` for ``DataLoader(batch_size=None)``.

Imports no Keras and no TensorFlow::

    from torch.utils.data import DataLoader
    from zerofeed.consumer.torch import TorchFeed

    train = TorchFeed("data/train.csv", batch_size=64, image_size=(224, 224), seed=0)
    loader = DataLoader(train, batch_size=None)          # batches are made already; no workers
    for epoch in range(10):
        for images, labels in loader:                     # one epoch per pass, in plan order
            ...                                           # images: uint8 (B, H, W, 3) tensors
    torch.save(train.state_dict(), "feed.pt")             # with the model's; load_state_dict()

Each pass over it is one epoch, in plan order; a pass stopped early resumes, on the next pass,
where it stopped. Images arrive as ``uint8`` ``(B, H, W, 3)`` tensors over the batch's memory (no
copy; ``images.permute(0, 3, 1, 2)`` for channels first), labels as ``int64`` or ``float32``.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data

from zerofeed.common.errors import ZerofeedError
from zerofeed.common.manifest import Manifest
from zerofeed.consumer.engine import DataConfig, Feed, ServingConfig
from zerofeed.consumer.settings import check_epoch
from zerofeed.consumer.stats import FeedStats

__all__ = ["TorchFeed"]


class TorchFeed(torch.utils.data.IterableDataset):
    """Batches of a zerofeed :class:`~zerofeed.consumer.Feed` as torch tensors, one epoch a pass.

    Args:
        source: as for ``FeedSequence``: a CSV, class folders, tar shards, URLs, or pairs.
        initial_epoch: the epoch the first pass serves.
        **settings: the :class:`~zerofeed.consumer.DataConfig` and
            :class:`~zerofeed.consumer.ServingConfig` fields (``batch_size``, ``image_size``,
            ``augment``, ``seed``, ``local_producers``, ``bind``, ...), as for ``FeedSequence``.
    """

    def __init__(
        self,
        source: str | Path | Sequence[tuple[Any, Any]] | Manifest,
        *,
        initial_epoch: int = 0,
        **settings: Any,
    ) -> None:
        super().__init__()
        data_fields = DataConfig.__dataclass_fields__
        serving_fields = ServingConfig.__dataclass_fields__
        unknown = sorted(set(settings) - set(data_fields) - set(serving_fields))
        if unknown:
            raise TypeError(
                f"TorchFeed got unknown setting(s) {unknown}; it takes "
                f"{sorted([*data_fields, *serving_fields])}"
            )
        self._position = (check_epoch(initial_epoch), 0)
        self.feed = Feed(
            source,
            data=DataConfig(**{k: v for k, v in settings.items() if k in data_fields}),
            serving=ServingConfig(**{k: v for k, v in settings.items() if k in serving_fields}),
        )
        """The engine (``feed.get``, ``feed.stats()``, ``feed.close()``)."""
        self._lock = threading.Lock()
        self._passes = 0
        if initial_epoch:
            self.feed.advance(initial_epoch)

    def __len__(self) -> int:
        """Batches per epoch."""
        return len(self.feed)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        if torch.utils.data.get_worker_info() is not None:
            raise ZerofeedError(
                "TorchFeed is read in the main process: use DataLoader(feed, batch_size=None) "
                "without num_workers (its producers already work in other processes)"
            )
        with self._lock:
            self._passes += 1
            this_pass = self._passes
            epoch, start = self._position
        for batch in range(start, len(self)):
            served = self.feed.get(epoch, batch)
            with self._lock:
                if this_pass != self._passes:  # a newer pass or load_state_dict took over
                    return
                self._position = (epoch, batch + 1) if batch + 1 < len(self) else (epoch + 1, 0)
            yield tuple(_tensor(array) for array in served.inputs)
        self.feed.advance(epoch + 1)

    @property
    def epoch(self) -> int:
        """The epoch the next batch belongs to."""
        with self._lock:
            return self._position[0]

    @property
    def stats(self) -> FeedStats:
        return self.feed.stats()

    def state_dict(self) -> dict[str, Any]:
        """Where this feed is (the next batch to serve) and what makes its batches (JSON-safe)."""
        with self._lock:
            position = self._position
        return self.feed.state(position=position)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume where ``state`` says; a state made by a feed with other batches is a
        ``ConfigError`` saying what differs."""
        position = self.feed.restore(state)
        with self._lock:
            self._position = position
            self._passes += 1  # a pass in progress stops

    def close(self) -> None:
        """Stop the producers and release everything; idempotent."""
        self.feed.close()

    def __enter__(self) -> TorchFeed:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __reduce__(self) -> Any:
        raise ZerofeedError(
            "a TorchFeed owns sockets and processes and cannot be pickled: use "
            "DataLoader(feed, batch_size=None) without num_workers"
        )


def _tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor over ``array``'s memory, without a copy.

    Batches received over the socket are read-only arrays over the message; torch warns that it
    cannot protect them, which is moot: nothing here writes to a batch.
    """
    if array.flags.writeable:
        return torch.from_numpy(array)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)

"""Consumer side: the feed engine and its adapters.

- :class:`Feed` — the engine: plans epochs, has producers make the batches, ``get(epoch, batch)``;
  no Keras or TensorFlow needed.
- :class:`FeedSequence` — the Keras ``PyDataset`` adapter, for ``model.fit`` under any backend;
  :class:`FeedCheckpoint` and :class:`FeedMonitor` are its Keras callbacks.
- ``zerofeed.consumer.torch.TorchFeed`` — a PyTorch ``IterableDataset`` (imports no Keras).
- ``FeedSequence.as_tf_dataset()`` — a ``tf.data.Dataset``.
- :func:`rank_and_world_size` — a data-parallel trainer's ``rank=``/``world_size=``, read from
  its framework's settings.

The Keras names are imported on first use, so ``import zerofeed.consumer`` (and the engine, and
the torch adapter) work without Keras.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zerofeed.common.errors import (
    BadSampleError,
    ConfigError,
    FeedTimeoutError,
    ManifestError,
    ProducerLostError,
    ProtocolError,
    ZerofeedError,
)
from zerofeed.consumer.engine import DataConfig, Feed, FeedBatch, Lifecycle, ServingConfig
from zerofeed.consumer.mock import MockTransport
from zerofeed.consumer.ranks import RankInfo, rank_and_world_size
from zerofeed.consumer.stats import FeedStats, SkippedSample

if TYPE_CHECKING:
    from zerofeed.consumer.checkpoint import FeedCheckpoint
    from zerofeed.consumer.monitor import FeedMonitor
    from zerofeed.consumer.sequence import FeedSequence

__all__ = [
    "BadSampleError",
    "ConfigError",
    "DataConfig",
    "Feed",
    "FeedBatch",
    "FeedCheckpoint",
    "FeedMonitor",
    "FeedSequence",
    "FeedStats",
    "FeedTimeoutError",
    "Lifecycle",
    "ManifestError",
    "MockTransport",
    "ProducerLostError",
    "ProtocolError",
    "RankInfo",
    "ServingConfig",
    "SkippedSample",
    "ZerofeedError",
    "rank_and_world_size",
]

_KERAS_NAMES = {
    "FeedCheckpoint": "zerofeed.consumer.checkpoint",
    "FeedMonitor": "zerofeed.consumer.monitor",
    "FeedSequence": "zerofeed.consumer.sequence",
}


def __getattr__(name: str) -> Any:
    """The Keras adapters, imported when first asked for."""
    module = _KERAS_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'zerofeed.consumer' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)

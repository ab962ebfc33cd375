"""``tf.data`` adapter: a :class:`~zerofeed.consumer.FeedSequence` as a ``tf.data.Dataset``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from zerofeed.common.errors import ConfigError

if TYPE_CHECKING:
    from zerofeed.consumer.sequence import FeedSequence

__all__ = ["distributed_dataset", "epoch_dataset"]


def epoch_dataset(sequence: FeedSequence) -> Any:
    """A ``tf.data.Dataset`` each pass over which is one epoch of ``sequence``, in plan order.

    Its ``element_spec`` has a variable batch dimension (the last batch may be smaller). Each
    element is ``tf.numpy_function`` over the batch index, which hands TensorFlow the batch's
    memory without a copy; ``Dataset.from_generator`` would too, but its per-batch Python (with
    an ``output_signature``: structure checks, spec comparisons, an eager function call) cost the
    training process 0.5 to 1.2 ms more a batch (``docs/performance.md``).

    tf.data's autotuning is off: the dataset has nothing to tune, and with it on, the first step
    of some epochs waited on busy cores for the autotuning thread of the iterator Keras had let
    go, a lost wake-up in TensorFlow (``docs/consumer.md``, ``python -m bench.epoch_stall``).
    """
    import tensorflow as tf

    batches = len(sequence)
    recipe = sequence.feed.recipe
    shapes: list[tuple[int | None, ...]] = [(None, *recipe.image_shape)]
    types = [tf.as_dtype(recipe.dtype)]
    probe = recipe.labels(np.zeros(1, np.int64))
    if probe is not None:
        shapes.append((None, *probe.shape[1:]))
        types.append(tf.as_dtype(probe.dtype))

    def batch(index: np.int64) -> tuple[np.ndarray, ...]:
        inputs = sequence[int(index)]
        if index == batches - 1:
            sequence.on_epoch_end()  # the arrays handed over stay valid
        return inputs

    @tf.autograph.experimental.do_not_convert
    def load(index: Any) -> tuple[Any, ...]:
        tensors = tf.numpy_function(batch, [index], types, stateful=True, name="zerofeed_batch")
        for tensor, shape in zip(tensors, shapes, strict=True):
            tensor.set_shape(shape)
        return tuple(tensors)

    options = tf.data.Options()
    options.autotune.enabled = False
    return tf.data.Dataset.range(batches).map(load).with_options(options)  # sequential: in order


def distributed_dataset(sequence: FeedSequence, strategy: Any) -> Any:
    """``sequence``'s batches as a ``tf.distribute`` dataset, one replica per worker, each
    worker's batches its rank's (see ``FeedSequence.as_distributed_dataset``)."""
    import tensorflow as tf

    recipe = sequence.feed.recipe
    local_replicas = len(strategy.extended.worker_devices)
    if local_replicas != 1 or strategy.num_replicas_in_sync != recipe.world_size:
        raise ConfigError(
            f"this feed is rank {recipe.rank} of {recipe.world_size}, but the strategy has "
            f"{strategy.num_replicas_in_sync} replica(s), {local_replicas} in this process: "
            "run one replica per worker process and give each worker's feed its rank"
        )

    def dataset(context: tf.distribute.InputContext) -> Any:
        if (context.input_pipeline_id, context.num_input_pipelines) != (
            recipe.rank,
            recipe.world_size,
        ):
            raise ConfigError(
                f"the strategy calls this worker input pipeline {context.input_pipeline_id} of "
                f"{context.num_input_pipelines}, but its feed is rank {recipe.rank} of "
                f"{recipe.world_size}; take rank and world_size from rank_and_world_size()"
            )
        return epoch_dataset(sequence)

    return strategy.distribute_datasets_from_function(dataset)

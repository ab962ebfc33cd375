"""``tf.data`` adapter: a :class:`~zerofeed.consumer.FeedSequence` as a ``tf.data.Dataset``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from zerofeed.consumer.sequence import FeedSequence

__all__ = ["epoch_dataset"]


def epoch_dataset(sequence: FeedSequence) -> Any:
    """A ``tf.data.Dataset`` each pass over which is one epoch of ``sequence``, in plan order.

    Its ``element_spec`` has a variable batch dimension (the last batch may be smaller).
    """
    import tensorflow as tf

    def one_epoch() -> Iterator[Any]:
        for index in range(len(sequence)):
            yield sequence[index]
        sequence.on_epoch_end()

    recipe = sequence.feed.recipe
    images = tf.TensorSpec((None, *recipe.image_shape), tf.as_dtype(recipe.dtype))
    probe = recipe.labels(np.zeros(1, np.int64))
    if probe is None:
        signature: Any = (images,)
    else:
        labels = tf.TensorSpec((None, *probe.shape[1:]), tf.as_dtype(probe.dtype))
        signature = (images, labels)
    return tf.data.Dataset.from_generator(one_epoch, output_signature=signature)

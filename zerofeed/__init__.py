"""zerofeed: image batches decoded and augmented by producer processes, fed to Keras over ZeroMQ.

The package has three parts that never import each other sideways:

- ``zerofeed.common``: wire protocol, manifests, epoch plans, transform specs, errors (no Keras, no PIL);
- ``zerofeed.producer``: decoding, augmentation, worker and supervisor processes (no Keras);
- ``zerofeed.consumer``: :class:`~zerofeed.consumer.FeedSequence`, the Keras ``PyDataset``.
"""

__version__ = "0.1.0"

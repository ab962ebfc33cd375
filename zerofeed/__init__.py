"""zerofeed: image batches decoded and augmented by producer processes, fed to Keras over ZeroMQ.

The package has three parts that never import each other sideways:

- ``zerofeed.common``: wire protocol, manifests, epoch plans, transform specs, errors (no Keras, no PIL);
- ``zerofeed.producer``: decoding, augmentation, worker and supervisor processes (no Keras);
- ``zerofeed.consumer``: :class:`~zerofeed.consumer.FeedSequence`, the Keras ``PyDataset``.

``zerofeed.__version__`` is the installed distribution's version (``pyproject.toml`` is its one
source); a source tree that was never installed reports ``0+unknown``.
"""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__: str = version("zerofeed")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

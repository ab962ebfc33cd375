"""Consumer side: :class:`FeedSequence`, the Keras ``PyDataset`` fed by zerofeed producers.

This is the only part of zerofeed that imports Keras.
"""

from zerofeed.consumer.monitor import FeedMonitor
from zerofeed.consumer.sequence import FeedSequence
from zerofeed.consumer.stats import FeedStats, SkippedSample

__all__ = ["FeedMonitor", "FeedSequence", "FeedStats", "SkippedSample"]

"""``FeedCheckpoint``: a Keras callback that keeps a feed on Keras' epoch, across restarts too.

Keras tells a ``PyDataset`` when passes begin and end but never which epoch it is in. After a
restart from ``keras.callbacks.BackupAndRestore`` (which sets the epoch ``fit`` resumes at), a new
feed would serve its first epoch. ``FeedCheckpoint(feed)`` moves the feed to Keras' epoch at the
start of every epoch, so that a ``fit`` interrupted in epoch ``e`` and restarted trains epochs
``e, e + 1, ...`` on exactly the data an uninterrupted run would have (Keras 3 restarts the epoch
from its first batch, and so does the feed).

With ``path`` it also saves the feed's state (JSON) at the end of every epoch, and checks it when
training begins: a restarted job whose feed would make other batches (another seed, manifest,
batch size, ...) stops with an error saying what differs instead of training on other data.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import keras

from zerofeed.consumer.sequence import FeedSequence

__all__ = ["FeedCheckpoint"]


class FeedCheckpoint(keras.callbacks.Callback):
    """Keeps ``feed`` on Keras' epoch; with ``path``, saves and checks its state there.

    Args:
        feed: the training feed.
        path: a JSON file for the feed's state, e.g. next to ``BackupAndRestore``'s
            ``backup_dir``; ``None`` keeps no file (the epoch still follows Keras').
    """

    def __init__(self, feed: FeedSequence, path: str | Path | None = None) -> None:
        super().__init__()
        self.feed = feed
        self.path = Path(path) if path is not None else None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.path is not None and self.path.exists():
            saved = json.loads(self.path.read_text())
            self.feed.restore(saved)  # ConfigError, saying what differs, if it does not fit

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.feed.epoch != epoch:
            self.feed.seek(epoch)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.path is None:
            return
        state = self.feed.feed.state(position=(epoch + 1, 0))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(state, indent=1))
        os.replace(partial, self.path)  # atomic: a kill leaves the old state or the new one

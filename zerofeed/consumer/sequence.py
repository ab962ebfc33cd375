"""``FeedSequence``: the Keras ``PyDataset`` adapter over a :class:`~zerofeed.consumer.engine.Feed`.

It only maps Keras' calls to plan positions; the engine does everything else.

**Passes.** Keras reads a ``PyDataset`` in passes, each begun by ``on_epoch_begin`` and ended by
``on_epoch_end``, asking for every index once, in random order with ``fit(shuffle=True)``. The
k-th distinct index asked for in a pass gets the plan's k-th batch, so the training step sees the
plan's (already shuffled) order whatever the index order. A pass that ends having asked for
every batch completes the feed's epoch; one that ends early does not — Keras' shape probe before
the first epoch under JAX and torch (one batch), or an interrupted epoch — and the next pass
replays the epoch from its first batch. Batches asked for before any pass (TensorFlow's
signature probe) are those of the first pass's positions, served again to it from memory. The
extra ``on_epoch_end`` calls Keras makes when it resets its iterator (before ``fit``, before each
``evaluate``) end no pass and change nothing.

**Without Keras** (a loop of ``seq[i]``), there are no passes: ``on_epoch_end`` moves to the next
epoch when the next batch is asked for.

Lock discipline: ``_lock`` guards the position fields only; the engine is called after it is
released, so no lock is ever held while another is taken.
"""

from __future__ import annotations

import dataclasses
import operator
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import keras
import numpy as np

from zerofeed.common.errors import ConfigError, ZerofeedError
from zerofeed.common.manifest import Manifest
from zerofeed.consumer.engine import DataConfig, Feed, FeedBatch, ServingConfig
from zerofeed.consumer.settings import check_epoch
from zerofeed.consumer.stats import FeedStats
from zerofeed.consumer.transport import TransportFactory

__all__ = ["FeedSequence"]

Batch = tuple[np.ndarray, np.ndarray] | tuple[np.ndarray]


class FeedSequence(keras.utils.PyDataset):
    """Batches of decoded, augmented images made by producer processes, for ``model.fit``.

    Each epoch is planned (shuffle, batches, a random stream per sample derived from
    ``(seed, epoch, sample)``) and handed to producers as they have room, at most
    ``max_queue_size`` batches ahead. Every sample appears exactly once per epoch, and a batch is
    byte-identical whichever producer made it, under every Keras backend.

    Batches are served in plan order: the k-th distinct index asked for in a pass over the
    epoch gets the plan's k-th batch, and asking for an index again returns the same batch
    (see the module docstring for how Keras' passes map to epochs). For resuming, see
    :class:`~zerofeed.consumer.FeedCheckpoint`, :meth:`seek`, :meth:`state` and :meth:`restore`.

    Args:
        source: a CSV manifest, a directory of class subfolders, a folder of tar shards, any of
            these at an ``s3://`` or ``http(s)://`` URL, or a sequence of (path, label) pairs
            (paths may be URLs); see ``docs/storage.md``.
        batch_size: samples per batch (the last batch of an epoch may be smaller; with ranks, see
            ``world_size``).
        image_size: ``(height, width)`` of the images produced.
        augment: ``None`` (resize only) or a dict of transforms, see ``docs/augment.md``.
        dtype: ``"uint8"`` (the model rescales; 4x less data to move) or ``"float32"`` in [0, 1].
        label_mode: ``"int"`` or ``"categorical"`` (one-hot float32); label vectors pass through.
        shuffle: draw a new sample order each epoch.
        seed: makes shuffle and augmentation reproducible; ``None`` picks one (see :attr:`seed`).
        root: the folder relative paths of a CSV resolve against (default: the CSV's folder;
            ``"."`` for paths relative to the working directory). Absolute paths work as they are.
        header: whether a CSV's first row is a header; ``None`` guesses (a first cell without a
            file extension, or text labels over numeric ones) and logs the guess.
        rank: this trainer's rank in data-parallel training, ``0 <= rank < world_size``.
        world_size: trainer ranks sharing each epoch. Every rank plans the same global batches of
            ``world_size * batch_size`` samples (same ``seed``, which must be given) and trains on
            its slice: each sample once across all ranks, the same ``len()`` on every rank (see
            ``docs/distributed.md``; :func:`~zerofeed.consumer.rank_and_world_size` reads them
            from the training framework).
        bind: where producers connect, e.g. ``"tcp://0.0.0.0:5555"``; ``None`` is a private ipc
            endpoint for local producers only. Port 0 or ``*`` picks a free port (see
            :attr:`endpoint`).
        local_producers: worker processes started and owned here; ``"auto"``: one per CPU,
            and up to two per CPU while each added one raises images/s (when other jobs hold
            cores; :mod:`zerofeed.producer.sizing`); ``0``: remote producers only.
        max_queue_size: batches in flight plus ready; bounds memory here and in producers.
        on_error: ``"raise"`` stops at a bad sample with an error naming it; ``"skip"`` drops it
            from its batch and lists it in :attr:`stats`.
        plugins: modules defining custom transforms, loaded by the local producers (and checked
            here: a custom transform none of them defines is a ``ConfigError`` at once).
        timeout: seconds ``__getitem__`` may wait before raising ``FeedTimeoutError``; ``None``
            waits, logging what it waits for every ``wait_log_interval`` seconds. Local producers
            that exit make it fail at once, with their last log lines, whatever the timeout.
        lease_timeout: seconds of silence after which a producer is presumed lost and its tasks
            are handed to others.
        task_timeout: seconds a task may be out before its batch is issued to another producer
            as well (the first valid result wins); ``None`` adapts it to the tasks seen: four
            times their median time, within 10-120 s.
        heartbeat_interval: seconds between producer heartbeats (local producers).
        wait_log_interval: seconds between "still waiting" log messages.
        initial_epoch: the epoch to start at, as ``fit(initial_epoch=...)`` when resuming.
        server_secret_key: this consumer's CURVE ``.key_secret`` file (``zerofeed keys generate``);
            with ``authorized_keys``, producers must authenticate and all traffic is encrypted.
        authorized_keys: a folder of the public ``.key`` files of the producers accepted.
        metrics_port: serve Prometheus metrics on this port (``zerofeed[metrics]`` extra; 0 picks
            a free port, see :attr:`metrics_port`); ``docs/metrics.md`` lists them.
        shared_memory: local producers write batches into shared memory that the batches are
            then handed out from (no socket copy, no allocation per batch); ``False`` sends
            them over the socket, as remote producers do.
        cache_dir: local producers keep what they read from object stores and web servers in
            this folder (``zerofeed producer --cache-dir``): later epochs read the local disk.
        cache_size: that cache's budget, bytes or text such as ``"50GB"`` (default 10 GiB).
        transport: a seam for tests: batches from this transport (e.g.
            :class:`~zerofeed.consumer.MockTransport`) instead of sockets and producers.
    """

    def __init__(
        self,
        source: str | Path | Sequence[tuple[Any, Any]] | Manifest,
        *,
        batch_size: int = 32,
        image_size: tuple[int, int] = (224, 224),
        augment: Mapping[str, Any] | None = None,
        dtype: Literal["uint8", "float32"] = "uint8",
        label_mode: Literal["int", "categorical"] = "int",
        shuffle: bool = True,
        seed: int | None = None,
        root: str | Path | None = None,
        header: bool | None = None,
        rank: int = 0,
        world_size: int = 1,
        bind: str | None = None,
        local_producers: int | Literal["auto"] = "auto",
        max_queue_size: int = 8,
        on_error: Literal["raise", "skip"] = "raise",
        plugins: Sequence[str] = (),
        timeout: float | None = None,
        lease_timeout: float = 5.0,
        task_timeout: float | None = None,
        heartbeat_interval: float = 1.0,
        wait_log_interval: float = 10.0,
        initial_epoch: int = 0,
        server_secret_key: str | Path | None = None,
        authorized_keys: str | Path | None = None,
        metrics_port: int | None = None,
        shared_memory: bool = True,
        cache_dir: str | Path | None = None,
        cache_size: int | str = "10GiB",
        transport: TransportFactory | None = None,
    ) -> None:
        super().__init__(workers=1, use_multiprocessing=False, max_queue_size=max_queue_size)
        self._epoch = check_epoch(initial_epoch)
        self.feed = Feed(
            source,
            data=DataConfig(
                batch_size=batch_size,
                image_size=image_size,
                augment=augment,
                dtype=dtype,
                label_mode=label_mode,
                shuffle=shuffle,
                seed=seed,
                root=root,
                header=header,
                on_error=on_error,
                rank=rank,
                world_size=world_size,
            ),
            serving=ServingConfig(
                bind=bind,
                local_producers=local_producers,
                max_queue_size=max_queue_size,
                plugins=plugins,
                timeout=timeout,
                lease_timeout=lease_timeout,
                task_timeout=task_timeout,
                heartbeat_interval=heartbeat_interval,
                wait_log_interval=wait_log_interval,
                server_secret_key=server_secret_key,
                authorized_keys=authorized_keys,
                metrics_port=metrics_port,
                shared_memory=shared_memory,
                cache_dir=cache_dir,
                cache_size=cache_size,
            ),
            transport=transport,
        )
        """The engine: ``feed.get(epoch, batch)``, ``feed.status()``, ... (no Keras needed)."""
        self.batch_size = batch_size
        self.image_size = self.feed.recipe.image_size
        self.dtype = dtype
        self.label_mode = label_mode
        self.shuffle = shuffle
        self.on_error = on_error
        self.timeout = timeout
        self._lock = threading.Lock()
        self._start = 0  # the first plan batch of this epoch's passes (after seek)
        self._assigned: dict[int, int] = {}  # Keras index -> plan batch, in this pass
        self._served = 0  # distinct plan batches asked for in this pass
        self._keras = False  # Keras has begun a pass (on_epoch_begin) at least once
        self._in_pass = False
        self._pending_ends = 0  # on_epoch_end calls not yet applied, outside Keras
        if self._epoch:
            self.feed.advance(self._epoch)

    # -- the PyDataset interface -----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.feed)

    def __getitem__(self, index: int) -> Batch:
        """Batch ``index`` of the current epoch as ``(x, y)`` (``(x,)`` for unlabeled sources)."""
        index = operator.index(index)
        batches = len(self)
        if not -batches <= index < batches:
            raise IndexError(f"batch index {index} out of range for {batches} batches")
        index %= batches
        with self._lock:
            moved = self._apply_pending_ends()
            epoch = self._epoch
            position = self._assigned.get(index)
            if position is None:
                position = self._start + len(self._assigned)
                if position < batches:
                    self._assigned[index] = position
                    self._served += 1
        if moved:
            self.feed.advance(epoch)
        if position >= batches:
            raise IndexError(
                f"epoch {epoch} was resumed at batch {self._start} with seek(); its remaining "
                f"{batches - self._start} batches have all been served"
            )
        batch = self.feed.get(epoch, position)
        self.on_batch(batch)
        return batch.inputs

    def on_epoch_begin(self) -> None:
        """Called by Keras at the start of every pass of ``fit``/``evaluate``/``predict``."""
        with self._lock:
            if not self._keras:
                # Keras calls on_epoch_end once before its first pass (its iterator's reset);
                # that call ended no epoch.
                self._keras = True
                self._pending_ends = 0
            self._in_pass = True
            self._assigned.clear()
            self._served = 0

    def on_epoch_end(self) -> None:
        """End the epoch: the next batches are the next epoch's (a new shuffle and new draws).

        Under Keras only a pass that asked for all the epoch's batches ends it (see the module
        docstring). The next epoch's first batches are already being made, so this costs nothing.
        """
        with self._lock:
            if not self._keras:
                self._pending_ends += 1
                return
            if not self._in_pass:
                return
            self._in_pass = False
            if self._start + self._served < len(self):
                return  # an incomplete pass: the next one replays this epoch from its start
            self._epoch += 1
            self._reset_epoch_locked(0)
            epoch = self._epoch
        self.feed.advance(epoch)

    def on_batch(self, batch: FeedBatch) -> None:
        """Called with every batch ``__getitem__`` returns, with its metadata (epoch, position,
        manifest rows, producer, skipped samples). Does nothing; override it to audit a feed."""

    # -- resuming --------------------------------------------------------------------------------

    def seek(self, epoch: int, batch: int = 0) -> None:
        """Resume at batch ``batch`` of ``epoch``, with the data order and augmentation it had.

        For a training script restarted from a checkpoint: the next distinct indices asked for
        get that epoch's batches ``batch``, ``batch + 1``, ... (``len(self) - batch`` of them);
        the epoch then ends as usual. Pass the same ``seed`` as the first run.
        """
        check_epoch(epoch)
        if isinstance(batch, bool) or not isinstance(batch, int) or not 0 <= batch < len(self):
            raise ConfigError(f"batch must be in [0, {len(self)}), got {batch!r}")
        self.feed.move_to(epoch, batch)
        with self._lock:
            self._epoch = epoch
            self._pending_ends = 0
            self._reset_epoch_locked(batch)

    def state(self) -> dict[str, Any]:
        """A JSON-serialisable checkpoint of where this feed is (the next batch to train on)
        and of what makes its batches; :meth:`restore` takes it back."""
        return self.feed.state(position=self.position)

    def restore(self, state: Mapping[str, Any]) -> None:
        """Resume where ``state`` (from :meth:`state`) says.

        Raises:
            ConfigError: the state was made by a feed with other batches; the message says what
                differs.
        """
        epoch, batch = self.feed.restore(state)
        with self._lock:
            self._epoch = epoch
            self._pending_ends = 0
            self._reset_epoch_locked(batch)

    @property
    def position(self) -> tuple[int, int]:
        """(epoch, batch): the next batch this feed would serve in order."""
        with self._lock:
            epoch = self._epoch + self._pending_ends
            if self._pending_ends:
                return (epoch, 0)
            done = self._start + self._served
            return (epoch + 1, 0) if done >= len(self) else (epoch, done)

    def _reset_epoch_locked(self, start: int) -> None:
        self._start = start
        self._assigned.clear()
        self._served = 0

    def _apply_pending_ends(self) -> bool:
        """Apply on_epoch_end calls made outside Keras (with the lock held); True if moved."""
        if not self._pending_ends:
            return False
        self._epoch += self._pending_ends
        self._pending_ends = 0
        self._reset_epoch_locked(0)
        return True

    # -- public extras ---------------------------------------------------------------------------

    def as_tf_dataset(self) -> Any:
        """A ``tf.data.Dataset`` over this feed, for custom loops and ``distribute`` strategies.

        Each pass over it is one epoch (it calls ``on_epoch_end`` at the end); its
        ``element_spec`` gives the batch shapes with a variable batch dimension.
        """
        from zerofeed.consumer.tfdata import epoch_dataset

        return epoch_dataset(self)

    def as_distributed_dataset(self, strategy: Any) -> Any:
        """This rank's batches for ``model.fit`` under a ``tf.distribute`` strategy.

        ``MultiWorkerMirroredStrategy`` with one replica per worker (one process per device, as
        torch DDP does): each worker's feed is its rank's, ``rank``/``world_size`` as the strategy
        numbers its workers (:func:`~zerofeed.consumer.rank_and_world_size` reads them from
        ``TF_CONFIG``). Each batch goes to the training step as this rank's slice of the global
        batch: no re-batching and no auto-sharding (which would drop or repeat batches). Each
        pass is one epoch, so ``model.fit(train.as_distributed_dataset(strategy), epochs=...)``.

        Raises:
            ConfigError: the strategy's workers or replicas do not match this feed's ranks.
        """
        from zerofeed.consumer.tfdata import distributed_dataset

        return distributed_dataset(self, strategy)

    @property
    def epoch(self) -> int:
        """The current epoch (0 before the first epoch ends)."""
        with self._lock:
            return self._epoch + self._pending_ends

    @property
    def stats(self) -> FeedStats:
        """A snapshot of what this feed has done so far (safe from any thread)."""
        return dataclasses.replace(self.feed.stats(), epoch=self.epoch)

    @property
    def manifest(self) -> Manifest:
        return self.feed.manifest

    @property
    def seed(self) -> int:
        """The seed of shuffle and augmentation (the one drawn when none was given)."""
        return self.feed.seed

    @property
    def endpoint(self) -> str:
        """The address producers connect to (with the real port when one was picked)."""
        return self.feed.endpoint

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """Class names, when labels came from names or class folders."""
        return self.feed.manifest.class_names

    @property
    def metrics_port(self) -> int | None:
        """The port Prometheus metrics are served on, if any."""
        return self.feed.metrics_port

    @property
    def shared_memory_bytes(self) -> int:
        """Memory held by the shared-memory batch slots of the local producers (0 without).

        It is outside this process's heap (in ``/dev/shm``) and enters its resident size only
        as far as batches are read: count it with the feed's memory.
        """
        return self.feed.shared_memory_bytes

    def close(self) -> None:
        """Stop the local producers, the I/O thread and the socket; idempotent."""
        self.feed.close()

    def __enter__(self) -> FeedSequence:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __reduce__(self) -> Any:
        raise ZerofeedError(
            "a FeedSequence owns sockets and processes and cannot be pickled; it already makes "
            "batches in other processes, so use it with workers=1 and use_multiprocessing=False"
        )

"""``FeedSequence``: a Keras ``PyDataset`` whose batches are made by zerofeed producers."""

from __future__ import annotations

import logging
import operator
import secrets
import shutil
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import keras
import numpy as np

from zerofeed.common.errors import BadSampleError, ConfigError, ZerofeedError
from zerofeed.common.manifest import Manifest, load_manifest, validate_label_mode
from zerofeed.common.metrics import Metric, MetricsServer
from zerofeed.common.plan import EpochPlan
from zerofeed.common.protocol import MAX_HEADER_BYTES, Task
from zerofeed.common.transforms import parse_augment
from zerofeed.consumer.credentials import curve_settings
from zerofeed.consumer.dispatcher import Dispatcher, DispatcherSettings
from zerofeed.consumer.endpoints import (
    connect_address,
    private_endpoint,
    validate_bind,
    warn_if_exposed,
)
from zerofeed.consumer.local import LocalProducers
from zerofeed.consumer.metrics import feed_metrics
from zerofeed.consumer.scheduler import Lease, ReadyBatch, Scheduler
from zerofeed.consumer.settings import (
    check_epoch,
    check_seed,
    check_settings,
    resolve_local_producers,
)
from zerofeed.consumer.slots import SlotPool
from zerofeed.consumer.stats import FeedStats, SkippedSample

__all__ = ["FeedSequence"]

log = logging.getLogger("zerofeed.consumer")

Batch = tuple[np.ndarray, np.ndarray] | tuple[np.ndarray]
_RECENT_SECONDS = 30.0
_SPARE_SLOTS = 2  # shared-memory batches beyond max_queue_size: those the caller still holds


class FeedSequence(keras.utils.PyDataset):
    """Batches of decoded, augmented images made by producer processes, for ``model.fit``.

    Each epoch is planned here (shuffle, batches, a random stream per sample derived from
    ``(seed, epoch, sample)``) and handed to producers as they have room, at most ``max_queue_size``
    batches ahead. Every sample appears exactly once per epoch, and a batch is byte-identical
    whichever producer made it.

    Batches are served in plan order: the k-th distinct index asked for in an epoch gets the plan's
    k-th batch, and asking for an index again returns the same batch. Sequential access therefore
    returns plan batch ``i`` for index ``i``; Keras' ``fit(shuffle=True)``, which asks for indices
    in random order, still receives the plan's (already shuffled) stream, fully prefetched.

    Args:
        source: a CSV manifest, a directory of class subfolders, or a sequence of (path, label).
        batch_size: samples per batch (the last batch of an epoch may be smaller).
        image_size: ``(height, width)`` of the images produced.
        augment: ``None`` (resize only) or a dict of transforms, see ``docs/augment.md``.
        dtype: ``"uint8"`` (the model rescales; 4x less data to move) or ``"float32"`` in [0, 1].
        label_mode: ``"int"`` or ``"categorical"`` (one-hot float32); label vectors pass through.
        shuffle: draw a new sample order each epoch.
        seed: makes shuffle and augmentation reproducible; ``None`` picks one (see :attr:`seed`).
        bind: where producers connect, e.g. ``"tcp://0.0.0.0:5555"``; ``None`` is a private ipc
            endpoint for local producers only. Port 0 or ``*`` picks a free port (see
            :attr:`endpoint`).
        local_producers: worker processes started and owned here; ``"auto"``: one per CPU;
            ``0``: remote producers only.
        max_queue_size: batches in flight plus ready; bounds memory here and in producers.
        on_error: ``"raise"`` stops at a bad sample with an error naming it; ``"skip"`` drops it
            from its batch and lists it in :attr:`stats`.
        plugins: modules defining custom transforms, loaded by the local producers.
        timeout: seconds ``__getitem__`` may wait before raising ``FeedTimeoutError``; ``None``
            waits for ever, logging what it waits for every ``wait_log_interval`` seconds.
        lease_timeout: seconds of silence after which a producer is presumed lost and its tasks
            are handed to others.
        heartbeat_interval: seconds between producer heartbeats (local producers).
        wait_log_interval: seconds between "still waiting" log messages.
        server_secret_key: this consumer's CURVE ``.key_secret`` file (``zerofeed keys generate``);
            with ``authorized_keys``, producers must authenticate and all traffic is encrypted.
        authorized_keys: a folder of the public ``.key`` files of the producers accepted.
        metrics_port: serve Prometheus metrics on this port (``zerofeed[metrics]`` extra; 0 picks
            a free port, see :attr:`metrics_port`); ``docs/metrics.md`` lists them.
        initial_epoch: the epoch to start at, as ``fit(initial_epoch=...)`` when resuming from a
            checkpoint; :meth:`seek` also resumes mid-epoch.
        shared_memory: local producers write batches into shared memory that the batches are
            then handed out from (no socket copy, no allocation per batch); ``False`` sends
            them over the socket, as remote producers do.
    """

    def __init__(
        self,
        source: str | Path | Sequence[tuple[Any, Any]],
        *,
        batch_size: int = 32,
        image_size: tuple[int, int] = (224, 224),
        augment: Mapping[str, Any] | None = None,
        dtype: Literal["uint8", "float32"] = "uint8",
        label_mode: Literal["int", "categorical"] = "int",
        shuffle: bool = True,
        seed: int | None = None,
        bind: str | None = None,
        local_producers: int | Literal["auto"] = "auto",
        max_queue_size: int = 8,
        on_error: Literal["raise", "skip"] = "raise",
        plugins: Sequence[str] = (),
        timeout: float | None = None,
        lease_timeout: float = 5.0,
        heartbeat_interval: float = 1.0,
        wait_log_interval: float = 10.0,
        initial_epoch: int = 0,
        server_secret_key: str | Path | None = None,
        authorized_keys: str | Path | None = None,
        metrics_port: int | None = None,
        shared_memory: bool = True,
    ) -> None:
        super().__init__(workers=1, use_multiprocessing=False, max_queue_size=max_queue_size)
        check_settings(
            batch_size=batch_size,
            image_size=image_size,
            dtype=dtype,
            max_queue_size=max_queue_size,
            on_error=on_error,
            timeout=timeout,
            lease_timeout=lease_timeout,
            heartbeat_interval=heartbeat_interval,
        )
        self.manifest: Manifest = load_manifest(source)
        validate_label_mode(label_mode, self.manifest)
        self._spec = parse_augment(augment)
        self.batch_size = batch_size
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.dtype = dtype
        self.label_mode = label_mode
        self.shuffle = shuffle
        self.on_error = on_error
        self.timeout = timeout
        self.seed: int = secrets.randbits(63) if seed is None else check_seed(seed)
        self._augment_wire = self._spec.to_wire()
        self._plans: dict[int, EpochPlan] = {}
        self._epoch = check_epoch(initial_epoch)
        self._slot_offset = 0
        self._pending_ends = 0
        self._keras_epochs = False
        self._in_epoch = False
        self._slots: dict[int, int] = {}
        self._skip_seen: set[tuple[int, int]] = set()
        self._skipped: list[SkippedSample] = []
        self._delivered = [0, 0]
        self._state_lock = threading.Lock()
        self._closed = False
        self._started = time.monotonic()
        self._history: deque[tuple[float, int, float]] = deque([(self._started, 0, 0.0)])
        workers = resolve_local_producers(local_producers)
        self._folders: list[str] = []
        if bind is None:
            self._folders.append(tempfile.mkdtemp(prefix="zerofeed-"))
        endpoint = private_endpoint(self._folders[0]) if bind is None else validate_bind(bind)
        curve, local_credentials, keys_folder = curve_settings(
            server_secret_key, authorized_keys, local_producers=workers
        )
        if keys_folder is not None:
            self._folders.append(keys_folder)
        batch_bytes = batch_size * self.image_size[0] * self.image_size[1] * 3
        self._shared_memory = (
            _slot_pool(batch_bytes * np.dtype(dtype).itemsize, max_queue_size + _SPARE_SLOTS)
            if workers and shared_memory
            else None
        )
        try:
            self._dispatcher = Dispatcher(
                DispatcherSettings(
                    bind=endpoint,
                    max_message_size=self._max_message_size(),
                    heartbeat_interval=heartbeat_interval,
                    wait_log_interval=wait_log_interval,
                    curve=curve,
                ),
                Scheduler(
                    plan_for=self._plan,
                    max_queue_size=max_queue_size,
                    lease_timeout=lease_timeout,
                    required_transforms=frozenset(self._spec.plugin_names),
                    image_shape=(*self.image_size, 3),
                    dtype=np.dtype(dtype),
                    epoch=initial_epoch,
                    first_task_id=secrets.randbits(48),  # a restarted consumer never reuses ids
                    slots=self._shared_memory,
                ),
                self._make_task,
            )
        except BaseException:
            if self._shared_memory is not None:
                self._shared_memory.close()
            raise
        self._dispatcher.set_hint(self._hint(workers))
        self._dispatcher.set_status_source(self._status)
        warn_if_exposed(self._dispatcher.endpoint, encrypted=curve is not None)
        try:
            self._local = (
                LocalProducers(
                    endpoint=connect_address(self._dispatcher.endpoint),
                    workers=workers,
                    data_root=self.manifest.root,
                    plugins=tuple(plugins),
                    heartbeat_interval=heartbeat_interval,
                    credentials=local_credentials,
                    slots=self._shared_memory,
                )
                if workers
                else None
            )
        except BaseException:
            _release(self._dispatcher, None, tuple(self._folders), slots=self._shared_memory)
            raise
        self._metrics = None
        if metrics_port is not None:
            try:
                self._metrics = MetricsServer(metrics_port, self._metric_samples)
            except BaseException:
                _release(
                    self._dispatcher, self._local, tuple(self._folders), slots=self._shared_memory
                )
                raise
        self._finalizer = weakref.finalize(
            self,
            _release,
            self._dispatcher,
            self._local,
            tuple(self._folders),
            self._metrics,
            slots=self._shared_memory,
        )

    # -- the PyDataset interface -----------------------------------------------------------------

    def __len__(self) -> int:
        return -(-len(self.manifest) // self.batch_size)

    def __getitem__(self, index: int) -> Batch:
        """Batch ``index`` of the current epoch as ``(x, y)`` (``(x,)`` for unlabeled sources)."""
        if self._closed:
            raise ZerofeedError(
                "this FeedSequence is closed; create a new one to read more batches"
            )
        index = operator.index(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches")
        index %= len(self)
        with self._state_lock:
            self._apply_epoch_end()
            epoch = self._epoch
            slot = self._slots.setdefault(index, self._slot_offset + len(self._slots))
        if slot >= len(self):
            raise IndexError(
                f"epoch {epoch} was resumed at batch {self._slot_offset} with seek(); its "
                f"remaining {len(self) - self._slot_offset} batches have all been served"
            )
        batch = self._dispatcher.get((epoch, slot), timeout=self.timeout)
        return self._deliver(batch)

    def on_epoch_begin(self) -> None:
        """Called by Keras at the start of every epoch of ``fit``/``evaluate``."""
        with self._state_lock:
            if not self._keras_epochs:
                # Keras calls on_epoch_end once before its first epoch (its iterator's reset);
                # that call did not end an epoch.
                self._keras_epochs = True
                self._pending_ends = 0
            self._in_epoch = True

    def on_epoch_end(self) -> None:
        """Move to the next epoch (a new shuffle and new augmentation draws).

        Under Keras, only the end of an epoch that began counts: the extra calls Keras makes when
        it resets its iterator (before ``fit``, before each ``evaluate``) change nothing. The
        next epoch's first batches are already being made, so the move costs nothing.
        """
        with self._state_lock:
            if self._keras_epochs and not self._in_epoch:
                return
            self._in_epoch = False
            self._pending_ends += 1
            if self._keras_epochs:
                self._apply_epoch_end()

    def _apply_epoch_end(self) -> None:
        """Apply pending epoch ends (called with the state lock held)."""
        if self._pending_ends:
            self._epoch += self._pending_ends
            self._pending_ends = 0
            self._slots.clear()
            self._slot_offset = 0
            self._dispatcher.move_to(self._epoch)

    # -- public extras ---------------------------------------------------------------------------

    def as_tf_dataset(self) -> Any:
        """A ``tf.data.Dataset`` over this feed, for custom loops and ``distribute`` strategies.

        Each pass over it is one epoch (it calls ``on_epoch_end`` at the end); its
        ``element_spec`` gives the batch shapes with a variable batch dimension.
        """
        import tensorflow as tf

        def one_epoch() -> Any:
            for index in range(len(self)):
                yield self[index]
            self.on_epoch_end()

        images = tf.TensorSpec((None, *self.image_size, 3), tf.as_dtype(self.dtype))
        label_shape = self.manifest.batch_labels(np.zeros(1, np.int64), self.label_mode)
        if label_shape is None:
            signature: Any = (images,)
        else:
            labels = tf.TensorSpec((None, *label_shape.shape[1:]), tf.as_dtype(label_shape.dtype))
            signature = (images, labels)
        return tf.data.Dataset.from_generator(one_epoch, output_signature=signature)

    def seek(self, epoch: int, batch: int = 0) -> None:
        """Resume at batch ``batch`` of ``epoch``, with the data order and augmentation it had.

        For a training script restarted from a checkpoint: the next distinct indices asked for
        get that epoch's batches ``batch``, ``batch + 1``, ... (``len(self) - batch`` of them);
        ``on_epoch_end`` then moves on as usual. Pass the same ``seed`` as the first run.
        """
        check_epoch(epoch)
        if isinstance(batch, bool) or not isinstance(batch, int) or not 0 <= batch < len(self):
            raise ConfigError(f"batch must be in [0, {len(self)}), got {batch!r}")
        with self._state_lock:
            self._epoch, self._pending_ends, self._slot_offset = epoch, 0, batch
            self._slots.clear()
            self._dispatcher.move_to(epoch, batch)

    @property
    def endpoint(self) -> str:
        """The address producers connect to (with the real port when one was picked)."""
        return self._dispatcher.endpoint

    @property
    def epoch(self) -> int:
        """The current epoch (0 before the first ``on_epoch_end``)."""
        with self._state_lock:
            return self._epoch + self._pending_ends

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """Class names, when labels came from names or class folders."""
        return self.manifest.class_names

    @property
    def stats(self) -> FeedStats:
        """A snapshot of what this feed has done so far."""
        scheduler = self._dispatcher.scheduler
        with self._dispatcher.locked():
            counters = scheduler.counters
            return FeedStats(
                batches_delivered=self._delivered[0],
                images_delivered=self._delivered[1],
                skipped=tuple(self._skipped),
                wait_seconds=self._dispatcher.wait_seconds,
                producers_connected=len(scheduler.producers),
                tasks_issued=counters.tasks_issued,
                tasks_reissued=counters.tasks_reissued,
                producers_lost=counters.producers_lost,
                messages_rejected=sum(self._dispatcher.rejected.values()),
                connections_refused=self._dispatcher.connections_refused,
                peak_outstanding=counters.peak_outstanding,
                epoch=self.epoch,
            )

    @property
    def shared_memory_bytes(self) -> int:
        """Memory held by the shared-memory batch slots of the local producers (0 without).

        It is outside this process's heap (in ``/dev/shm``) and enters its resident size only
        as far as batches are read: count it with the feed's memory.
        """
        return self._shared_memory.resident_bytes if self._shared_memory is not None else 0

    def close(self) -> None:
        """Stop the local producers, the I/O thread and the socket; idempotent."""
        self._closed = True
        self._finalizer()

    def __enter__(self) -> FeedSequence:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------------

    def _plan(self, epoch: int) -> EpochPlan:
        plan = self._plans.get(epoch)
        if plan is None:
            if len(self._plans) > 4:
                self._plans.pop(min(self._plans))
            plan = EpochPlan(
                num_samples=len(self.manifest),
                batch_size=self.batch_size,
                seed=self.seed,
                epoch=epoch,
                shuffle=self.shuffle,
            )
            self._plans[epoch] = plan
        return plan

    def _make_task(self, lease: Lease) -> Task:
        paths = self.manifest.paths
        rows = lease.rows.tolist()
        return Task(
            task_id=lease.task_id,
            epoch=lease.key[0],
            batch=lease.key[1],
            seed=self.seed,
            image_size=self.image_size,
            dtype=self.dtype,
            augment=self._augment_wire,
            samples=tuple((row, paths[row]) for row in rows),
            slot=lease.slot,
        )

    def _deliver(self, batch: ReadyBatch) -> Batch:
        if batch.skipped:
            self._note_skipped(batch)
            if self.on_error == "raise":
                first = batch.skipped[0]
                raise BadSampleError(
                    self.manifest.paths[first.index],
                    first.kind,
                    first.reason,
                    producer=batch.producer,
                )
        labels = self.manifest.batch_labels(batch.rows, self.label_mode)
        with self._state_lock:
            self._delivered[0] += 1
            self._delivered[1] += len(batch.rows)
        return (batch.images,) if labels is None else (batch.images, labels)

    def _note_skipped(self, batch: ReadyBatch) -> None:
        with self._state_lock:
            if batch.key in self._skip_seen:
                return
            self._skip_seen.add(batch.key)
            for skipped in batch.skipped:
                self._skipped.append(
                    SkippedSample(
                        path=self.manifest.paths[skipped.index],
                        kind=skipped.kind,
                        reason=skipped.reason,
                        epoch=batch.key[0],
                        producer=batch.producer,
                    )
                )
        for skipped in batch.skipped:
            log.warning(
                "skipped %s: %s: %s",
                self.manifest.paths[skipped.index],
                skipped.kind,
                skipped.reason,
            )

    @property
    def metrics_port(self) -> int | None:
        """The port Prometheus metrics are served on, if any."""
        return self._metrics.port if self._metrics is not None else None

    def _metric_samples(self) -> list[Metric]:
        return feed_metrics(self.stats)

    def _status(self) -> dict[str, Any]:
        """The live state ``zerofeed status`` prints: totals, recent rates and producers."""
        stats = self.stats
        now = time.monotonic()
        with self._state_lock:
            self._history.append((now, stats.images_delivered, stats.wait_seconds))
            while len(self._history) > 2 and now - self._history[1][0] > _RECENT_SECONDS:
                self._history.popleft()
            then, images, waited = self._history[0]
        span = max(now - then, 1e-9)
        return {
            "endpoint": self.endpoint,
            "epoch": stats.epoch,
            "batches_per_epoch": len(self),
            "images_delivered": stats.images_delivered,
            "recent_images_per_s": (stats.images_delivered - images) / span if span > 0.5 else None,
            "recent_wait_share": min(1.0, (stats.wait_seconds - waited) / span)
            if span > 0.5
            else None,
            "wait_seconds": stats.wait_seconds,
            "producers": self._dispatcher.producer_table(),
            "tasks_reissued": stats.tasks_reissued,
            "producers_lost": stats.producers_lost,
            "messages_rejected": stats.messages_rejected,
            "connections_refused": stats.connections_refused,
            "samples_skipped": len(stats.skipped),
            "uptime_s": now - self._started,
            "shared_memory": self._slot_state(),
        }

    def _slot_state(self) -> dict[str, int] | None:
        pool = self._shared_memory
        if pool is None:
            return None
        return {
            "slots": pool.count,
            "free": pool.free,
            "quarantined": pool.quarantined,
            "bytes": pool.resident_bytes,
        }

    def _max_message_size(self) -> int:
        height, width = self.image_size
        itemsize = np.dtype(self.dtype).itemsize
        return self.batch_size * height * width * 3 * itemsize + MAX_HEADER_BYTES + 4096

    def _hint(self, workers: int) -> str:
        if workers:
            return f"{workers} local producer worker(s) were started; check their log output above."
        return (
            f"Start one with: zerofeed producer --connect {connect_address(self.endpoint)} "
            "--data-root <folder the manifest paths are relative to>"
        )


def _slot_pool(slot_bytes: int, count: int) -> SlotPool | None:
    """Shared memory for the local producers' batches; None (and a warning) when there is no
    room for it: batches then go over the socket."""
    try:
        return SlotPool(slot_bytes=slot_bytes, count=count)
    except ConfigError as exc:
        log.warning("local producers send batches over the socket: %s", exc)
        return None


def _release(
    dispatcher: Dispatcher,
    local: LocalProducers | None,
    folders: tuple[str, ...],
    metrics: MetricsServer | None = None,
    *,
    slots: SlotPool | None = None,
) -> None:
    """Stop everything a FeedSequence started (run by close(), garbage collection or exit)."""
    if metrics is not None:
        metrics.close()
    try:
        if local is not None:
            local.close()
    finally:
        dispatcher.close()
        if slots is not None:
            slots.close()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)

"""``Feed``: the Keras-free feed engine that every adapter (Keras, tf.data, torch) stands on.

A feed plans each epoch, has its batches made by producers and returns batch ``(epoch, batch)``
with :meth:`Feed.get`, identical whichever producer made it. It owns every resource it starts —
temp folders, shared-memory slots, the dispatcher (socket and I/O thread), local producer processes,
the metrics server — through one exit stack, released by :meth:`Feed.close`, by garbage collection
or at interpreter exit, whichever comes first.

Lock discipline. Three locks exist, and none is held while another object is called:

- ``Feed._lock`` guards the feed's own counters, skipped samples and resume position. Code holding
  it calls nothing outside this module (not the transport, not a callback, not logging).
- The dispatcher's lock guards the scheduler; the dispatcher calls nothing while holding it but the
  scheduler and the slot pool, which call nothing.
- The slot pool's lock guards its free list; it calls nothing.

So no thread ever waits for a lock while holding another one, and any thread may call any method
(``stats()`` from a metrics thread or a monitor while the training thread is in ``get``). Callbacks
the feed registers with its parts (status, metrics, local producer exit) hold it weakly.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import secrets
import shutil
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from zerofeed.common.errors import BadSampleError, ConfigError, ProducerLostError, ZerofeedError
from zerofeed.common.leftovers import owned_folder
from zerofeed.common.manifest import Manifest, ManifestSource, load_manifest, validate_label_mode
from zerofeed.common.metrics import Metric, MetricsServer
from zerofeed.common.plan import check_rank
from zerofeed.common.plugins import load_plugins
from zerofeed.common.producer_config import ProducerConfig
from zerofeed.common.sizes import parse_size
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
from zerofeed.consumer.recipe import BatchRecipe
from zerofeed.consumer.scheduler import Key, ReadyBatch, Scheduler
from zerofeed.consumer.settings import (
    check_epoch,
    check_seed,
    check_settings,
    resolve_local_producers,
)
from zerofeed.consumer.slots import SlotPool
from zerofeed.consumer.state import feed_state, read_feed_state
from zerofeed.consumer.stats import SKIPPED_KEPT, FeedStats, SkippedSample
from zerofeed.consumer.termination import TerminationCleanup
from zerofeed.consumer.transport import Transport, TransportFactory

__all__ = ["DataConfig", "Feed", "FeedBatch", "Lifecycle", "ServingConfig"]

log = logging.getLogger("zerofeed.consumer")

_RECENT_SECONDS = 30.0
_SPARE_SLOTS = 2  # shared-memory batches beyond max_queue_size: those the caller still holds
_TERMINATION_WAIT = 5.0  # seconds a SIGTERM waits for the local producers' own clean stop


class Lifecycle(enum.Enum):
    """Where a :class:`Feed` is in its life."""

    CREATED = "created"  # being built: resources are being started
    RUNNING = "running"  # serving batches
    CLOSED = "closed"  # everything released; get() raises


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """What the batches are: everything that decides their bytes, plus the bad-sample policy.

    ``root`` is the folder relative manifest paths resolve against (default: the CSV's folder);
    ``header`` whether a CSV's first row is a header (``None``: guessed, see
    :func:`~zerofeed.common.manifest.load_manifest`);
    ``on_error``: ``"raise"`` makes a bad sample an error naming it, ``"skip"`` drops it from its
    batch and lists it in the stats. ``rank`` of ``world_size``: the slice of every global batch
    this feed serves in data-parallel training (every rank needs the same ``seed``; see
    :class:`~zerofeed.common.plan.EpochPlan`). The other fields are those of
    :class:`~zerofeed.consumer.FeedSequence`.
    """

    batch_size: int = 32
    image_size: tuple[int, int] = (224, 224)
    augment: Mapping[str, Any] | None = None
    dtype: Literal["uint8", "float32"] = "uint8"
    label_mode: Literal["int", "categorical"] = "int"
    shuffle: bool = True
    seed: int | None = None
    root: str | Path | None = None
    header: bool | None = None
    on_error: Literal["raise", "skip"] = "raise"
    rank: int = 0
    world_size: int = 1


@dataclass(frozen=True, kw_only=True)
class ServingConfig:
    """How the batches are made and brought here: producers, sockets, bounds and timeouts.

    The fields are those of :class:`~zerofeed.consumer.FeedSequence`; ``timeout`` is the default
    bound of :meth:`Feed.get`.
    """

    bind: str | None = None
    local_producers: int | Literal["auto"] = "auto"
    max_queue_size: int = 8
    plugins: Sequence[str] = ()
    timeout: float | None = None
    lease_timeout: float = 5.0
    task_timeout: float | None = None
    heartbeat_interval: float = 1.0
    wait_log_interval: float = 10.0
    server_secret_key: str | Path | None = None
    authorized_keys: str | Path | None = None
    metrics_port: int | None = None
    shared_memory: bool = True
    cache_dir: str | Path | None = None
    cache_size: int | str = "10GiB"


@dataclass(frozen=True, kw_only=True, eq=False)
class FeedBatch:
    """One batch of a feed, with where it came from.

    Attributes:
        epoch, batch: its position in the feed's plan.
        images: ``(B, H, W, 3)`` in the feed's dtype (read-only when it lies in shared memory).
        labels: ``(B,)`` or ``(B, K)``, or ``None`` for unlabeled data.
        rows: the manifest rows of the images, in order.
        producer: the name of the producer worker that made it.
        skipped: samples of the batch that could not be made (``on_error="skip"``).
    """

    epoch: int
    batch: int
    images: np.ndarray
    labels: np.ndarray | None
    rows: np.ndarray
    producer: str
    skipped: tuple[SkippedSample, ...]

    @property
    def inputs(self) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray]:
        """``(images, labels)``, or ``(images,)`` without labels: what a model is fed."""
        return (self.images,) if self.labels is None else (self.images, self.labels)


class Feed:
    """Batches of decoded, augmented images made by producer processes; no Keras needed.

    Args:
        source: a CSV manifest, a directory of class subfolders, a folder of tar shards, any of
            these at an ``s3://`` or ``http(s)://`` URL, or a sequence of (path, label) pairs
            (paths may be URLs); see ``docs/storage.md``.
        data: what the batches are (:class:`DataConfig`).
        serving: how they are made and brought here (:class:`ServingConfig`).
        transport: makes the transport from the feed's recipe instead of sockets and producers
            (e.g. :class:`~zerofeed.consumer.mock.MockTransport`, for tests); no local
            producers are started then.

    Raises:
        ConfigError: a setting is invalid, or ``augment`` names a custom transform that none of
            the local producers' ``plugins`` defines.
    """

    def __init__(
        self,
        source: ManifestSource | Manifest,
        *,
        data: DataConfig | None = None,
        serving: ServingConfig | None = None,
        transport: TransportFactory | None = None,
    ) -> None:
        data = data or DataConfig()
        serving = serving or ServingConfig()
        self._lifecycle = Lifecycle.CREATED
        check_settings(
            batch_size=data.batch_size,
            image_size=data.image_size,
            dtype=data.dtype,
            max_queue_size=serving.max_queue_size,
            on_error=data.on_error,
            timeout=serving.timeout,
            lease_timeout=serving.lease_timeout,
            task_timeout=serving.task_timeout,
            heartbeat_interval=serving.heartbeat_interval,
        )
        manifest = load_manifest(source, root=data.root, header=data.header)
        validate_label_mode(data.label_mode, manifest)
        spec = parse_augment(data.augment)
        check_rank(data.rank, data.world_size, len(manifest))
        if data.world_size > 1 and data.seed is None:
            raise ConfigError(
                f"rank {data.rank} of {data.world_size} needs a seed: every rank must plan the "
                "same epochs, so pass the same seed=... to the feed of every rank"
            )
        self.recipe = BatchRecipe(
            manifest=manifest,
            batch_size=data.batch_size,
            image_size=(int(data.image_size[0]), int(data.image_size[1])),
            dtype=data.dtype,
            augment=spec.to_wire(),
            seed=secrets.randbits(63) if data.seed is None else check_seed(data.seed),
            shuffle=data.shuffle,
            label_mode=data.label_mode,
            custom_transforms=spec.plugin_names,
            rank=int(data.rank),
            world_size=int(data.world_size),
        )
        self._on_error = data.on_error
        self._timeout = serving.timeout
        workers = 0 if transport is not None else resolve_local_producers(serving.local_producers)
        if workers:
            _check_plugins(spec.plugin_names, tuple(serving.plugins))
        self._lock = threading.Lock()
        self._epoch = 0
        self._position: Key = (0, 0)
        self._delivered_keys: set[Key] = set()
        self._batches_delivered = 0
        self._images_delivered = 0
        self._skipped: deque[SkippedSample] = deque(maxlen=SKIPPED_KEPT)
        self._skipped_by_kind: Counter[str] = Counter()
        self._started = time.monotonic()
        self._history: deque[tuple[float, int, float]] = deque([(self._started, 0, 0.0)])
        self._slots: SlotPool | None = None
        self._local: LocalProducers | None = None
        self._metrics: MetricsServer | None = None
        with contextlib.ExitStack() as stack:
            if transport is not None:
                self._transport: Transport = transport(self.recipe)
                stack.callback(self._transport.close)
            else:
                self._transport = self._start_serving(stack, serving, workers)
            self._transport.set_status_source(_weakly(self.status, dict))
            if serving.metrics_port is not None:
                self._metrics = MetricsServer(
                    serving.metrics_port, _weakly(self._metric_samples, list)
                )
                stack.callback(self._metrics.close)
            resources = stack.pop_all()
        self._finalizer = weakref.finalize(self, resources.close)
        self._lifecycle = Lifecycle.RUNNING

    def _start_serving(
        self, stack: contextlib.ExitStack, serving: ServingConfig, workers: int
    ) -> Dispatcher:
        """Folders, slots, the dispatcher and local producers, each released by ``stack``."""
        recipe = self.recipe
        folder: str | None = None
        if serving.bind is None:
            folder = _private_folder(stack)
            endpoint = private_endpoint(folder)
        else:
            endpoint = validate_bind(serving.bind)
        curve, local_credentials, keys = curve_settings(
            serving.server_secret_key, serving.authorized_keys, local_producers=workers
        )
        keys_folder = None
        if keys is not None:
            keys_folder, keys_owner = keys
            stack.callback(shutil.rmtree, keys_folder, ignore_errors=True)
            stack.callback(keys_owner.release)
        if workers and serving.shared_memory:
            self._slots = _slot_pool(recipe.batch_bytes, serving.max_queue_size + _SPARE_SLOTS)
            if self._slots is not None:
                stack.callback(self._slots.close)
        dispatcher = Dispatcher(
            DispatcherSettings(
                bind=endpoint,
                heartbeat_interval=serving.heartbeat_interval,
                wait_log_interval=serving.wait_log_interval,
                curve=curve,
            ),
            Scheduler(
                plan_for=recipe.plan,
                max_queue_size=serving.max_queue_size,
                lease_timeout=serving.lease_timeout,
                required_transforms=frozenset(recipe.custom_transforms),
                required_prefixes=recipe.manifest.url_prefixes,
                image_shape=recipe.image_shape,
                dtype=np.dtype(recipe.dtype),
                first_task_id=secrets.randbits(48),  # a restarted consumer never reuses ids
                slots=self._slots,
                task_timeout=serving.task_timeout,
            ),
            recipe,
        )
        stack.callback(dispatcher.close)
        dispatcher.set_hint(_hint(workers, dispatcher.endpoint))
        warn_if_exposed(dispatcher.endpoint, encrypted=curve is not None)
        if workers:
            self._local = LocalProducers(
                _local_producer_config(
                    serving,
                    endpoint=connect_address(dispatcher.endpoint),
                    workers=workers,
                    data_root=recipe.manifest.producer_root,
                    allow=tuple(sorted(recipe.manifest.origins)),
                    credentials=local_credentials,
                    slots=self._slots,
                ),
                on_exit=_local_exit_reporter(dispatcher),
            )
            stack.callback(self._local.close)
        owned = (folder, keys_folder)
        if self._local is not None or self._slots is not None or any(owned):
            termination = TerminationCleanup(
                partial(_on_termination, self._local, self._slots, owned)
            )
            if termination.install():
                stack.callback(termination.uninstall)
        return dispatcher

    # -- batches ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Batches per epoch."""
        return self.recipe.batches_per_epoch

    def get(self, epoch: int, batch: int, *, timeout: float | None = None) -> FeedBatch:
        """Batch ``batch`` of ``epoch``, waiting for it as long as ``timeout`` (default: the
        feed's ``timeout``; ``None`` waits, logging what it waits for).

        Asking for a later epoch moves the feed there (earlier epochs are dropped); asking again
        for a batch still held returns the same batch.

        Raises:
            BadSampleError: the batch has a bad sample and ``on_error`` is ``"raise"``.
            FeedTimeoutError: nothing arrived in time.
            ZerofeedError: the feed is closed, its local producers died, or the batch comes
                before where the feed was moved to.
        """
        self._check_running()
        check_epoch(epoch)
        if isinstance(batch, bool) or not isinstance(batch, int | np.integer):
            raise TypeError(f"batch must be an int, got {batch!r}")
        if not 0 <= batch < len(self):
            raise IndexError(f"batch {batch} out of range for {len(self)} batches an epoch")
        key = (epoch, int(batch))
        ready = self._transport.get(key, timeout=self._timeout if timeout is None else timeout)
        result = self._batch(ready)
        with self._lock:
            first = key not in self._delivered_keys
            if first:
                self._delivered_keys.add(key)
                self._batches_delivered += 1
                self._images_delivered += len(ready.rows)
                self._skipped.extend(result.skipped)
                self._skipped_by_kind.update(sample.kind for sample in result.skipped)
            self._epoch = max(self._epoch, epoch)
            self._position = max(self._position, _after(key, len(self)))
        if first:
            for sample in result.skipped:
                log.warning("skipped %s: %s: %s", sample.path, sample.kind, sample.reason)
        if result.skipped and self._on_error == "raise":
            first_bad = result.skipped[0]
            raise BadSampleError(
                first_bad.path, first_bad.kind, first_bad.reason, producer=ready.producer
            )
        return result

    def _batch(self, ready: ReadyBatch) -> FeedBatch:
        paths = self.recipe.manifest.paths
        epoch, batch = ready.key
        skipped = tuple(
            SkippedSample(
                path=paths[s.index],
                kind=s.kind,
                reason=s.reason,
                epoch=epoch,
                producer=ready.producer,
            )
            for s in ready.skipped
        )
        return FeedBatch(
            epoch=epoch,
            batch=batch,
            images=ready.images,
            labels=self.recipe.labels(ready.rows),
            rows=ready.rows,
            producer=ready.producer,
            skipped=skipped,
        )

    def advance(self, epoch: int) -> None:
        """Move forward to the start of ``epoch`` (its first batches are likely made already);
        nothing when the feed is there or past it. Safe to call from any thread, in any order."""
        self._check_running()
        check_epoch(epoch)
        with self._lock:
            if epoch <= self._epoch:
                return
            self._epoch = epoch
            self._position = max(self._position, (epoch, 0))
            self._delivered_keys = {k for k in self._delivered_keys if k[0] >= epoch}
        self._transport.advance(epoch)

    def move_to(self, epoch: int, batch: int = 0) -> None:
        """Serve from batch ``batch`` of ``epoch`` on, backwards too (everything held is dropped).

        The batches from there on are the very ones that position had before.
        """
        self._check_running()
        check_epoch(epoch)
        if isinstance(batch, bool) or not isinstance(batch, int) or not 0 <= batch < len(self):
            raise ConfigError(f"batch must be in [0, {len(self)}), got {batch!r}")
        with self._lock:
            self._epoch = epoch
            self._position = (epoch, batch)
            self._delivered_keys = {k for k in self._delivered_keys if k >= (epoch, batch)}
        self._transport.move_to(epoch, batch)

    # -- checkpoints -----------------------------------------------------------------------------

    def state(self, position: Key | None = None) -> dict[str, Any]:
        """A JSON-serialisable checkpoint: the recipe's fingerprint and where to resume.

        ``position`` (epoch, batch) is the next batch to train on; by default the one after the
        latest batch :meth:`get` returned.
        """
        if position is None:
            with self._lock:
                position = self._position
        return feed_state(self.recipe.fingerprint(), position)

    def restore(self, state: Mapping[str, Any]) -> Key:
        """Resume at the position of ``state`` (from :meth:`state`); returns it.

        Raises:
            ConfigError: ``state`` is not a feed state, or it was made by a feed whose batches
                differ from this one's (another manifest, seed, batch size, ...); the message says
                what differs.
        """
        epoch, batch = read_feed_state(state, self.recipe.fingerprint(), len(self))
        self.move_to(epoch, batch)
        return epoch, batch

    # -- what it has done ------------------------------------------------------------------------

    def stats(self) -> FeedStats:
        """A snapshot of what this feed has done so far (any thread, any time)."""
        counters = self._transport.counters()  # takes the transport's lock, not ours
        with self._lock:
            return FeedStats(
                batches_delivered=self._batches_delivered,
                images_delivered=self._images_delivered,
                skipped=tuple(self._skipped),
                samples_skipped=sum(self._skipped_by_kind.values()),
                skipped_by_kind=dict(self._skipped_by_kind),
                wait_seconds=counters.wait_seconds,
                producers_connected=counters.producers_connected,
                producer_seconds=counters.producer_seconds,
                tasks_issued=counters.tasks_issued,
                tasks_reissued=counters.tasks_reissued,
                producers_lost=counters.producers_lost,
                messages_rejected=counters.messages_rejected,
                connections_refused=counters.connections_refused,
                peak_outstanding=counters.peak_outstanding,
                tasks_overdue=counters.tasks_overdue,
                results_duplicate=counters.results_duplicate,
                producers_refused=counters.producers_refused,
                slots_quarantined=counters.slots_quarantined,
                batches_in_shared_memory=counters.batches_in_shared_memory,
                epoch=self._epoch,
            )

    def status(self) -> dict[str, Any]:
        """The live state ``zerofeed status`` prints: totals, recent rates, producers, slots."""
        stats = self.stats()
        producers = self._transport.producer_table()
        now = time.monotonic()
        with self._lock:
            self._history.append((now, stats.images_delivered, stats.wait_seconds))
            while len(self._history) > 2 and now - self._history[1][0] > _RECENT_SECONDS:
                self._history.popleft()
            then, images, waited = self._history[0]
        span = max(now - then, 1e-9)
        recent = span > 0.5
        return {
            "endpoint": self.endpoint,
            "rank": self.recipe.rank,
            "world_size": self.recipe.world_size,
            "epoch": stats.epoch,
            "batches_per_epoch": len(self),
            "images_delivered": stats.images_delivered,
            "recent_images_per_s": (stats.images_delivered - images) / span if recent else None,
            "recent_wait_share": min(1.0, (stats.wait_seconds - waited) / span) if recent else None,
            "wait_seconds": stats.wait_seconds,
            "producers": producers,
            "tasks_reissued": stats.tasks_reissued,
            "producers_lost": stats.producers_lost,
            "messages_rejected": stats.messages_rejected,
            "connections_refused": stats.connections_refused,
            "samples_skipped": stats.samples_skipped,
            "uptime_s": now - self._started,
            "shared_memory": self._slot_state(),
        }

    def _metric_samples(self) -> list[Metric]:
        return feed_metrics(self.stats())

    def _slot_state(self) -> dict[str, int] | None:
        pool = self._slots
        if pool is None:
            return None
        return {
            "slots": pool.count,
            "free": pool.free,
            "quarantined": pool.quarantined,
            "bytes": pool.resident_bytes,
        }

    # -- properties ------------------------------------------------------------------------------

    @property
    def lifecycle(self) -> Lifecycle:
        """Created, running or closed."""
        return self._lifecycle

    @property
    def manifest(self) -> Manifest:
        return self.recipe.manifest

    @property
    def seed(self) -> int:
        """The seed of shuffle and augmentation (the one drawn when none was given)."""
        return self.recipe.seed

    @property
    def endpoint(self) -> str:
        """The address producers connect to (with the real port when one was picked)."""
        return self._transport.endpoint

    @property
    def metrics_port(self) -> int | None:
        """The port Prometheus metrics are served on, if any."""
        return self._metrics.port if self._metrics is not None else None

    @property
    def shared_memory_bytes(self) -> int:
        """Memory held by the local producers' shared-memory batch slots (0 without them)."""
        return self._slots.resident_bytes if self._slots is not None else 0

    @property
    def shared_memory_path(self) -> Path | None:
        """The slot file local producers write batches into, if any."""
        return self._slots.path if self._slots is not None else None

    @property
    def local_producers_pid(self) -> int | None:
        """The pid of the local producer process (its workers are its children), if any."""
        return self._local.pid if self._local is not None else None

    # -- closing ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the local producers, the I/O thread and the socket, remove files; idempotent."""
        self._lifecycle = Lifecycle.CLOSED
        self._finalizer()

    def __enter__(self) -> Feed:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_running(self) -> None:
        if self._lifecycle is Lifecycle.CLOSED:
            raise ZerofeedError("this feed is closed; create a new one to read more batches")


_Result = TypeVar("_Result")


def _weakly(method: Callable[[], _Result], default: Callable[[], _Result]) -> Callable[[], _Result]:
    """``method`` called through a weak reference (``default()`` once its object is gone), so that
    the parts a feed owns do not keep it alive."""
    reference = weakref.WeakMethod(method)

    def call() -> _Result:
        bound = reference()
        return default() if bound is None else bound()

    return call


def _local_exit_reporter(dispatcher: Dispatcher) -> Callable[[str], None]:
    def report(message: str) -> None:
        log.error("%s", message)
        dispatcher.fail(ProducerLostError(message))

    return report


def _after(key: Key, batches: int) -> Key:
    epoch, batch = key
    return (epoch, batch + 1) if batch + 1 < batches else (epoch + 1, 0)


def _check_plugins(required: tuple[str, ...], plugins: tuple[str, ...]) -> None:
    """Local producers get exactly ``plugins``: each must import, and the custom transforms
    must be among theirs (ConfigError otherwise, before anything starts)."""
    if not required and not plugins:
        return
    defined = load_plugins(plugins)
    missing = sorted(set(required) - set(defined))
    if missing:
        where = (
            f"the plugin module(s) {list(plugins)} define only {sorted(defined)}"
            if plugins
            else "no plugins were given"
        )
        raise ConfigError(
            f"augment asks for custom transform(s) {missing}, which no local producer would have: "
            f"{where}. Pass plugins=['your.module'] naming the module whose ZEROFEED_TRANSFORMS "
            "defines them."
        )


def _on_termination(
    local: LocalProducers | None, slots: SlotPool | None, folders: tuple[str | Path | None, ...]
) -> None:
    """What a SIGTERM must not leave behind (see :mod:`zerofeed.consumer.termination`)."""
    if local is not None:  # their graceful stop removes what they own; bounded, as docker stop is
        local.terminate_group(wait=_TERMINATION_WAIT)
    if slots is not None:
        slots.unlink()
    for folder in folders:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _private_folder(stack: contextlib.ExitStack) -> str:
    """A fresh 0700 folder for the ipc endpoint, removed by ``stack``; it carries its owner's
    lock, so that the next start of this user removes it if this process is killed."""
    folder, owner = owned_folder("feed")
    stack.callback(shutil.rmtree, folder, ignore_errors=True)
    stack.callback(owner.release)
    return str(folder)


def _local_producer_config(
    serving: ServingConfig,
    *,
    endpoint: str,
    workers: int,
    data_root: Path | None,
    allow: tuple[str, ...],
    credentials: tuple[Path, Path] | None,
    slots: SlotPool | None,
) -> ProducerConfig:
    """How the feed's own producers work (:class:`LocalProducers` starts them with it)."""
    size = serving.cache_size
    try:
        budget = parse_size(size) if isinstance(size, str) else int(size)
    except ValueError as exc:
        raise ConfigError(f"cache_size: {exc}") from exc
    verbose = logging.getLogger("zerofeed").isEnabledFor(logging.DEBUG)
    return ProducerConfig(
        endpoints=(endpoint,),
        workers=workers,
        # "auto": as many as CPUs, then more while that raises throughput (other jobs hold cores)
        max_workers=2 * workers if serving.local_producers == "auto" else 0,
        data_root=data_root,
        allow=allow,
        cache_dir=None if serving.cache_dir is None else Path(serving.cache_dir).resolve(),
        cache_size=budget,
        plugins=tuple(serving.plugins),
        heartbeat_interval=serving.heartbeat_interval,
        server_key=None if credentials is None else credentials[0],
        secret_key=None if credentials is None else credentials[1],
        slots=None if slots is None else (slots.path, slots.slot_bytes, slots.count),
        name=f"local:{os.getpid()}",
        log_level="DEBUG" if verbose else "WARNING",
    )


def _slot_pool(slot_bytes: int, count: int) -> SlotPool | None:
    """Shared memory for the local producers' batches; None (and a warning) when there is no
    room for it: batches then go over the socket."""
    try:
        return SlotPool(slot_bytes=slot_bytes, count=count)
    except ConfigError as exc:
        log.warning("local producers send batches over the socket: %s", exc)
        return None


def _hint(workers: int, endpoint: str) -> str:
    if workers:
        return f"{workers} local producer worker(s) were started; check their log output above."
    return (
        f"Start one with: zerofeed producer --connect {connect_address(endpoint)} "
        "--data-root <folder the manifest paths are relative to>"
    )

"""The consumer's bookkeeping, free of sockets and threads: who holds which batch, what is ready.

Batches are keyed by ``(epoch, batch)`` and issued in stream order: the rest of the current epoch,
then the first batches of the next, so that an epoch starts without a stall. A task is issued only to
a producer with a free credit, and only while ``in flight + ready <= max_queue_size``. Every issued
task is a lease held by one producer; when that producer is lost or says goodbye, its leases go back to
the front of the queue, and a late result from it is refused because the lease is no longer its own.

A lease also ends when its task is **overdue**: out for longer than :meth:`Scheduler.task_bound`
(``task_timeout``, or four times the median time tasks have taken, within 10-120 s). Its batch is
then issued again to another producer, while the late one may still answer: the first valid result
wins, the other is dropped as a duplicate, so a producer that is connected but stuck (a read in
uninterruptible storage, a result it never sends) holds no batch for ever and exactly-once holds.
A producer whose results keep failing validation (:data:`STRIKES` in a row) gets no more tasks.

A batch whose tasks keep ending without a result (:data:`SPLIT_AFTER` leases lost with their
producer or overdue: one of its samples hangs or crashes whoever makes it) is **split**: made one
sample at a time, in parallel. A sample whose own task fails :data:`SAMPLE_ATTEMPTS` times is
left out as a bad sample of kind ``"stalled"`` (``on_error`` applies), and the batch is put
together from the rest: no batch circles for ever. Such a sample is remembered: the tasks of later
batches (other epochs) leave it out from the start, so it costs no more producers.
"""

from __future__ import annotations

import statistics
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from zerofeed.common.errors import ConfigError, ProtocolError
from zerofeed.common.locations import AllowList
from zerofeed.common.plan import EpochPlan
from zerofeed.common.protocol import Hello, Result, Skipped
from zerofeed.consumer.slots import SlotPool

__all__ = ["STRIKES", "Key", "Lease", "ProducerInfo", "ReadyBatch", "ResultMismatch", "Scheduler"]

Key = tuple[int, int]

STRIKES = 3
"""Results in a row that fail validation after which a producer gets no more tasks."""
_OVERDUE_FACTOR = 4.0
_OVERDUE_FLOOR = 10.0
_OVERDUE_CEILING = 120.0
_DURATIONS_KEPT = 64
SPLIT_AFTER = 3
"""Whole-batch leases that ended without a result after which a batch is made sample by sample."""
SAMPLE_ATTEMPTS = 2
"""One-sample leases that ended without a result after which that sample is left out."""


@dataclass
class _Split:
    """A batch made one sample at a time (see the module docstring)."""

    rows: np.ndarray
    made: dict[int, ReadyBatch] = field(default_factory=dict)  # row -> its one-sample result
    stalled: dict[int, Skipped] = field(default_factory=dict)  # row -> why it is left out
    issued: dict[int, int] = field(default_factory=dict)  # row -> task id of its newest lease
    attempts: dict[int, int] = field(default_factory=dict)  # row -> leases that failed

    def pending(self) -> list[int]:
        """Rows with nothing made, nothing given up, and no lease out."""
        return [
            row
            for row in self.rows.tolist()
            if row not in self.made and row not in self.stalled and row not in self.issued
        ]

    def done(self) -> bool:
        return len(self.made) + len(self.stalled) == len(self.rows)


class ResultMismatch(ProtocolError):
    """A result for a task its sender holds, that does not match the task (a strike)."""


@dataclass(eq=False)
class ProducerInfo:
    """A connected producer worker, as the consumer sees it."""

    identity: bytes
    name: str
    capacity: int
    lacks: str  # what it needs to get tasks ("" when it has everything)
    last_seen: float
    connected_at: float = 0.0  # when its HELLO came (time.monotonic())
    connection: int | None = None
    tasks: set[int] = field(default_factory=set)
    shares_slots: bool = False  # it mapped this consumer's shared-memory slots
    pid: int | None = None  # its process (local producers that share the slots say)
    decoder: str = ""  # how it decodes: "accelerated ...", or "portable ...: why" (its HELLO)
    last_task: int = -1  # the id of the latest task leased to it (idle producers take turns)
    strikes: int = 0  # results in a row that failed validation
    refused: str | None = None  # why it gets no more tasks (its results kept failing validation)

    @property
    def capable(self) -> bool:
        """Whether it has every custom transform and may read every store the data is in."""
        return not self.lacks

    @property
    def free(self) -> int:
        return self.capacity - len(self.tasks) if self.capable and self.refused is None else 0


@dataclass(frozen=True)
class Lease:
    """An issued task: batch ``key`` made of manifest ``rows``, held by ``producer``."""

    task_id: int
    key: Key
    rows: np.ndarray
    producer: bytes
    generation: int = 0
    slot: int | None = None  # the shared-memory slot the producer writes the batch into
    issued_at: float = 0.0  # time.monotonic() when it was issued
    part: int | None = None  # the one manifest row it makes, for a batch made sample by sample


@dataclass(frozen=True)
class ReadyBatch:
    """A received batch: ``images`` of the manifest ``rows`` kept, and the samples ``skipped``."""

    key: Key
    images: np.ndarray
    rows: np.ndarray
    skipped: tuple[Skipped, ...]
    producer: str


@dataclass
class SchedulerCounters:
    """Running totals kept by the scheduler (read under the dispatcher's lock)."""

    tasks_issued: int = 0
    tasks_reissued: int = 0
    results_stale: int = 0
    peak_outstanding: int = 0
    producers_lost: int = 0
    tasks_overdue: int = 0  # tasks issued again because they took too long
    results_duplicate: int = 0  # results for a batch another producer had delivered first
    results_in_slots: int = 0  # accepted results whose images came in a shared-memory slot
    producer_seconds_closed: float = 0.0  # producer_seconds of the producers that have left


class Scheduler:
    """Decides which task goes to which producer, and keeps results until they are taken."""

    def __init__(
        self,
        *,
        plan_for: Callable[[int], EpochPlan],
        max_queue_size: int,
        lease_timeout: float,
        required_transforms: frozenset[str],
        required_prefixes: frozenset[str] = frozenset(),
        image_shape: tuple[int, int, int],
        dtype: np.dtype,
        epoch: int = 0,
        first_task_id: int = 1,
        slots: SlotPool | None = None,
        task_timeout: float | None = None,
    ) -> None:
        self._plan_for = plan_for
        self._max_queue_size = max_queue_size
        self._lease_timeout = lease_timeout
        self._required = required_transforms
        self._prefixes = required_prefixes
        self._image_shape = image_shape
        self._dtype = np.dtype(dtype)
        self._slots = slots
        self._task_timeout = task_timeout
        self._durations: deque[float] = deque(maxlen=_DURATIONS_KEPT)
        self._typical: float | None = None  # median of _durations, None when to be computed
        self._superseded: set[int] = set()  # leases whose batch another lease delivered
        self._refused_names: dict[str, str] = {}  # producer name -> why it gets no tasks
        self._failures: dict[Key, int] = {}  # whole-batch leases that ended without a result
        self._late: set[int] = set()  # leases that went overdue and are still out
        self._stalled_rows: dict[int, Skipped] = {}  # samples no producer could make
        self._split: dict[Key, _Split] = {}
        self.epoch = epoch
        self._floor: Key = (epoch, 0)
        self._generation = 0
        self._cursor: Key = (epoch, 0)
        self._requeue: deque[Key] = deque()
        self._awaited: set[Key] = set()
        self._next_task_id = first_task_id
        self.producers: dict[bytes, ProducerInfo] = {}
        self._leases: dict[int, Lease] = {}
        self._issued: dict[Key, int] = {}
        self._ready: OrderedDict[Key, ReadyBatch] = OrderedDict()
        self._delivered: OrderedDict[Key, ReadyBatch] = OrderedDict()
        self.counters = SchedulerCounters()

    @property
    def floor(self) -> Key:
        """The first (epoch, batch) still served: everything before it was dropped."""
        return self._floor

    @property
    def required_transforms(self) -> frozenset[str]:
        """The custom transforms a producer must have to get tasks."""
        return self._required

    def lacking(self, hello: Hello) -> str:
        """What a producer that said ``hello`` lacks to get tasks, as advice ("" if nothing)."""
        problems = []
        transforms = sorted(self._required - set(hello.transforms))
        if transforms:
            problems.append(
                f"custom transform(s) {transforms} (start it with --plugin MODULE for the "
                "module(s) that define them)"
            )
        allowed = AllowList(_valid_entries(hello.reads))
        prefixes = sorted(p for p in self._prefixes if not allowed.permits(p))
        if prefixes:
            flags = " ".join(f"--allow {p}" for p in prefixes)
            problems.append(
                f"leave to read {', '.join(prefixes)} (start it with {flags}, or a prefix)"
            )
        return "; ".join(problems)

    # -- producers -------------------------------------------------------------------------------

    def hello(
        self, identity: bytes, hello: Hello, now: float, *, connection: int | None = None
    ) -> ProducerInfo:
        """Register (or re-register) a producer; a re-hello means it dropped what it held."""
        previous = self._remove(identity, now)
        if previous is not None:
            self._release(previous)
        producer = ProducerInfo(
            identity=identity,
            name=hello.producer,
            capacity=hello.credits,
            lacks=self.lacking(hello),
            last_seen=now,
            connected_at=now,
            connection=connection,
            shares_slots=self._slots is not None and hello.slots == str(self._slots.path),
            refused=self._refused_names.get(hello.producer),
            pid=hello.pid,
            decoder=hello.decoder,
        )
        self.producers[identity] = producer
        return producer

    def heard_from(self, identity: bytes, now: float) -> bool:
        """Note that ``identity`` is alive (renewing its leases); False if it is unknown."""
        producer = self.producers.get(identity)
        if producer is None:
            return False
        producer.last_seen = now
        return True

    def goodbye(
        self, identity: bytes, returned: tuple[int, ...] = (), *, now: float | None = None
    ) -> ProducerInfo | None:
        """A producer left (``BYE``, or it cannot be reached): its tasks go back to the queue.

        ``returned`` are the tasks it says it never started (``BYE``): their slots are free.
        """
        producer = self._remove(identity, time.monotonic() if now is None else now)
        if producer is not None:
            self._release(producer, unstarted=frozenset(returned))
        return producer

    def expire(self, now: float) -> list[ProducerInfo]:
        """Producers silent for longer than the lease timeout: lost, their tasks re-queued."""
        lost = [p for p in self.producers.values() if now - p.last_seen > self._lease_timeout]
        for producer in lost:
            self.lose(producer.identity, now=now)
        return lost

    def disconnected(self, connection: int, *, now: float | None = None) -> list[ProducerInfo]:
        """The connection (file descriptor) closed: the producers that spoke on it are lost."""
        gone = [p.identity for p in self.producers.values() if p.connection == connection]
        lost = (self.lose(identity, now=now) for identity in gone)
        return [producer for producer in lost if producer is not None]

    def lose(self, identity: bytes, *, now: float | None = None) -> ProducerInfo | None:
        """A producer is lost (silent past its lease, or unreachable): its tasks are re-queued."""
        producer = self.goodbye(identity, now=now)
        if producer is not None:
            self.counters.producers_lost += 1
        return producer

    def producer_seconds(self, now: float) -> float:
        """Seconds of producer-worker connection summed over every worker so far.

        Its change over an interval, divided by the interval, is the mean number of workers
        connected: the right divisor for a rate while producers come, go or size themselves. A
        worker counts from its ``HELLO`` until it leaves or is declared lost (as
        ``producers_connected`` does), so the total never goes down.
        """
        connected = sum(now - producer.connected_at for producer in self.producers.values())
        return self.counters.producer_seconds_closed + connected

    def _remove(self, identity: bytes, now: float) -> ProducerInfo | None:
        producer = self.producers.pop(identity, None)
        if producer is not None:
            self.counters.producer_seconds_closed += max(0.0, now - producer.connected_at)
        return producer

    def _release(self, producer: ProducerInfo, unstarted: frozenset[int] = frozenset()) -> None:
        for task_id in sorted(producer.tasks, reverse=True):
            lease = self._leases.pop(task_id)
            self._superseded.discard(task_id)
            self._late.discard(task_id)
            if lease.slot is not None and self._slots is not None:
                if task_id in unstarted:
                    self._slots.release(lease.slot)
                else:  # the producer may still be writing it, until its process is gone
                    self._slots.quarantine(lease.slot, owner=producer.pid)
            failed = task_id not in unstarted
            if lease.part is not None:
                self._part_ended(lease, "its producer was lost" if failed else None)
                continue
            if self._issued.get(lease.key) == task_id:
                del self._issued[lease.key]
                if failed:
                    self._whole_failed(lease.key)
                if self._wanted(lease.key):
                    self._requeue.appendleft(lease.key)
                    self.counters.tasks_reissued += 1

    def strike(self, identity: bytes, reason: str) -> ProducerInfo | None:
        """A result from ``identity`` failed validation. After :data:`STRIKES` in a row the
        producer is refused (no more tasks, also after it reconnects under the same name) and its
        tasks go to others at once; returns it then, else None."""
        producer = self.producers.get(identity)
        if producer is None or producer.refused is not None:
            return None
        producer.strikes += 1
        if producer.strikes < STRIKES:
            return None
        producer.refused = self._refused_names[producer.name] = (
            f"{producer.strikes} results in a row failed validation, the last: {reason}"
        )
        self._release(producer)
        producer.tasks.clear()
        return producer

    def reclaim_slots(self) -> None:
        """Lend again the quarantined slots of producer processes that have exited."""
        if self._slots is not None:
            self._slots.reclaim()

    @property
    def slots_quarantined(self) -> int:
        """Shared-memory slots never lent again (their producer vanished mid-task)."""
        return self._slots.quarantined if self._slots is not None else 0

    # -- deadlines -------------------------------------------------------------------------------

    def task_bound(self) -> float:
        """Seconds a task may be out before its batch is issued to another producer as well."""
        if self._task_timeout is not None:
            return self._task_timeout
        if not self._durations:
            return _OVERDUE_CEILING
        if self._typical is None:  # asked on every turn of the I/O loop: once per new duration
            self._typical = statistics.median(self._durations)
        return min(max(_OVERDUE_FACTOR * self._typical, _OVERDUE_FLOOR), _OVERDUE_CEILING)

    def overdue(self, now: float) -> list[Lease]:
        """Leases out for longer than :meth:`task_bound`: their batches are queued again, first,
        for another producer. The late producer keeps its lease (it may still deliver)."""
        bound = self.task_bound()
        late = [
            lease
            for lease in self._leases.values()
            if now - lease.issued_at > bound
            and self._is_newest(lease)
            and lease.generation == self._generation
            and any(p.free > 0 for p in self.producers.values() if p.identity != lease.producer)
        ]
        for lease in late:
            self.counters.tasks_overdue += 1
            self._late.add(lease.task_id)
            if lease.part is not None:
                self._part_ended(lease, f"it was not made within {bound:.0f} s")
                continue
            del self._issued[lease.key]
            self._whole_failed(lease.key)
            self._requeue.appendleft(lease.key)
        return late

    def next_deadline(self, now: float) -> float | None:
        """The earliest moment after ``now`` at which :meth:`expire` or :meth:`overdue` may act
        with no message in between (a producer's lease runs out, a task becomes overdue), or
        None when nothing is due. A moment already past is left out: what did not act then
        (an overdue task with no other producer free) waits for a message that changes that."""
        bound = self.task_bound()
        due = [p.last_seen + self._lease_timeout for p in self.producers.values()]
        due += [lease.issued_at + bound for lease in self._leases.values()]
        return min((moment for moment in due if moment > now), default=None)

    def _is_newest(self, lease: Lease) -> bool:
        """Whether ``lease`` is the newest one out for its batch (or its sample, when split)."""
        if lease.part is None:
            return self._issued.get(lease.key) == lease.task_id
        split = self._split.get(lease.key)
        return split is not None and split.issued.get(lease.part) == lease.task_id

    def _whole_failed(self, key: Key) -> None:
        """A whole-batch lease of ``key`` ended without a result: split the batch after a few."""
        self._failures[key] = failures = self._failures.get(key, 0) + 1
        if failures >= SPLIT_AFTER and key not in self._split and key >= self._floor:
            rows = self._plan_for(key[0]).batch(key[1])
            known = {r: self._stalled_rows[r] for r in rows.tolist() if r in self._stalled_rows}
            self._split[key] = _Split(rows=rows, stalled=known)
            self._finish_split(key)

    def _part_ended(self, lease: Lease, failure: str | None) -> None:
        """A one-sample lease ended without a result; after a few, the sample is left out."""
        split = self._split.get(lease.key)
        row = lease.part
        if split is None or row is None or split.issued.get(row) != lease.task_id:
            return  # the batch is done, or a newer lease makes this sample
        del split.issued[row]
        if failure is None:
            return  # handed back unstarted: simply issued again
        split.attempts[row] = tries = split.attempts.get(row, 0) + 1
        if tries >= SAMPLE_ATTEMPTS:
            self._reissue_without(row)
            split.stalled[row] = self._stalled_rows[row] = Skipped(
                index=row,
                kind="stalled",
                reason=(
                    f"no producer made this sample: {tries} one-sample tasks for it ended without "
                    f"a result (the last: {failure}), after {SPLIT_AFTER} for its whole batch; "
                    "reading or decoding it hangs or crashes producers"
                ),
            )
            self._finish_split(lease.key)

    def _reissue_without(self, row: int) -> None:
        """Batches out whose task holds ``row`` (given up on) are issued again without it; the
        tasks out keep their leases (the first valid result wins)."""
        for key, task_id in list(self._issued.items()):
            lease = self._leases.get(task_id)
            if lease is not None and row in lease.rows.tolist():
                del self._issued[key]
                self._requeue.appendleft(key)

    def _finish_split(self, key: Key) -> ReadyBatch | None:
        """Put a split batch together once every sample is made or left out."""
        split = self._split.get(key)
        if split is None or not split.done():
            return None
        del self._split[key]
        self._failures.pop(key, None)
        parts = [split.made[row] for row in split.rows.tolist() if row in split.made]
        images = [part.images for part in parts if len(part.rows)]
        skipped = [s for row in split.rows.tolist() for s in _skipped_of(split, row)]
        batch = ReadyBatch(
            key,
            np.concatenate(images) if images else np.empty((0, *self._image_shape), self._dtype),
            np.concatenate([part.rows for part in parts]) if parts else split.rows[:0],
            tuple(skipped),
            ", ".join(sorted({part.producer for part in parts})) or "-",
        )
        self._superseded.update(t for t, other in self._leases.items() if other.key == key)
        self._ready[key] = batch
        return batch

    def _holders(self, key: Key) -> set[bytes]:
        """Producers holding a live lease for ``key`` (more than one after an overdue task)."""
        return {
            lease.producer
            for lease in self._leases.values()
            if lease.key == key and lease.task_id not in self._superseded
        }

    # -- issuing ---------------------------------------------------------------------------------

    def assign(self, now: float | None = None) -> list[Lease]:
        """New leases to send now, as far as credits and ``max_queue_size`` allow.

        A batch whose task went overdue goes to a producer other than the one(s) holding it.
        """
        now = time.monotonic() if now is None else now
        leases = self._assign_parts(now)
        while True:
            producer = max(self.producers.values(), key=self._preference, default=None)
            if producer is None or producer.free <= 0:
                break
            key = self._next_key()
            if key is None:
                break
            if not len(self._rows_to_make(key)):  # only samples no producer could make
                self._ready[key] = self._with_stalled(
                    ReadyBatch(
                        key,
                        np.empty((0, *self._image_shape), self._dtype),
                        self._plan_for(key[0]).batch(key[1])[:0],
                        (),
                        "-",
                    )
                )
                continue
            holders = self._holders(key)
            if producer.identity in holders:
                others = [p for p in self.producers.values() if p.identity not in holders]
                producer = max(others, key=self._preference, default=producer)
                if producer.identity in holders or producer.free <= 0:
                    self._requeue.appendleft(key)  # wait for another producer's credit
                    break
            leases.append(self._lease(key, producer, now))
        return leases

    def _assign_parts(self, now: float) -> list[Lease]:
        """One-sample leases for the samples of split batches, each to a producer that does
        not hold one for it already."""
        leases: list[Lease] = []
        for key in sorted(self._split):
            split = self._split[key]
            for row in split.pending():
                holders = {
                    lease.producer
                    for lease in self._leases.values()
                    if lease.key == key and lease.part == row
                }
                producer = max(
                    (p for p in self.producers.values() if p.identity not in holders),
                    key=self._preference,
                    default=None,
                )
                if producer is None or producer.free <= 0:
                    return leases
                lease = self._lease(key, producer, now, part=row)
                split.issued[row] = lease.task_id
                leases.append(lease)
        return leases

    def _preference(self, producer: ProducerInfo) -> tuple[bool, int, int]:
        """Producers with a free credit and no overdue task first (one holding an overdue task
        is probably stuck: whatever it gets queues behind it), then the one with most credits
        free, then the one that has waited longest for a task: when the trainer, not the
        producers, sets the pace, every producer has all its credits free, and they take turns
        (one scaled in mid-run gets the next task) instead of the first to join taking all."""
        return (
            producer.free > 0 and not (producer.tasks & self._late),
            producer.free,
            -producer.last_task,
        )

    def _next_key(self) -> Key | None:
        urgent = [key for key in self._awaited if self._wanted(key)]
        if urgent:
            return min(urgent)  # someone is waiting for it: issued even past max_queue_size
        while self._requeue and not self._wanted(self._requeue[0]):
            self._requeue.popleft()
        while self._cursor[0] <= self.epoch + 1 and not self._wanted(self._cursor):
            self._cursor = self._after(self._cursor)
        if self._requeue:
            if not self._make_room():
                return None
            return self._requeue.popleft()
        if self._cursor[0] > self.epoch + 1 or not self._make_room():
            return None
        key, self._cursor = self._cursor, self._after(self._cursor)
        return key

    def _after(self, key: Key) -> Key:
        epoch, batch = key
        return (epoch, batch + 1) if batch + 1 < len(self._plan_for(epoch)) else (epoch + 1, 0)

    def _make_room(self) -> bool:
        while self.outstanding >= self._max_queue_size:
            if not self._delivered:
                return False
            self._delivered.popitem(last=False)
        return True

    def has_free_credit(self) -> bool:
        """Whether some producer could take a task now."""
        return any(producer.free > 0 for producer in self.producers.values())

    def awaited_ready(self) -> bool:
        """Whether a batch someone waits for is ready to take. Most become ready with a result;
        a batch of only stalled samples becomes ready in :meth:`assign`, with no result."""
        return any(key in self._ready for key in self._awaited)

    @property
    def outstanding(self) -> int:
        """Batches in flight for live epochs plus batches received (delivered ones retained too)."""
        return len(self._issued) + len(self._ready) + len(self._delivered) + len(self._split)

    def _wanted(self, key: Key) -> bool:
        return (
            key >= self._floor
            and key not in self._issued
            and key not in self._ready
            and key not in self._delivered
            and key not in self._split
        )

    def _rows_to_make(self, key: Key) -> np.ndarray:
        """The plan's rows of batch ``key``, without the samples no producer could make."""
        rows = self._plan_for(key[0]).batch(key[1])
        if not self._stalled_rows:
            return rows
        return rows[~np.isin(rows, list(self._stalled_rows))]

    def _lease(
        self, key: Key, producer: ProducerInfo, now: float, *, part: int | None = None
    ) -> Lease:
        rows = self._rows_to_make(key) if part is None else np.array([part])
        shared = self._slots is not None and producer.shares_slots and part is None
        slot = self._slots.take() if shared and self._slots is not None else None
        lease = Lease(
            self._next_task_id,
            key,
            rows,
            producer.identity,
            self._generation,
            slot,
            issued_at=now,
            part=part,
        )
        self._next_task_id += 1
        self._leases[lease.task_id] = lease
        if part is None:
            self._issued[key] = lease.task_id
        producer.tasks.add(lease.task_id)
        producer.last_task = lease.task_id
        self.counters.tasks_issued += 1
        self.counters.peak_outstanding = max(self.counters.peak_outstanding, self.outstanding)
        return lease

    # -- results ---------------------------------------------------------------------------------

    def result(
        self, identity: bytes, result: Result, now: float | None = None
    ) -> ReadyBatch | None:
        """Store a result; None if it belongs to a past epoch, or another producer delivered the
        batch first (both dropped, and counted).

        Raises:
            ProtocolError: the task was never issued to this sender (or was re-issued after the
                sender was presumed lost).
            ResultMismatch: the result does not match the task (a strike for the sender); the
                batch is issued again.
        """
        lease = self._leases.get(result.task_id)
        self._late.discard(result.task_id)
        if lease is None or lease.producer != identity:
            raise ProtocolError(
                f"result for task {result.task_id}, which is not leased to this sender "
                "(never issued, or re-issued after the sender was presumed lost)"
            )
        del self._leases[result.task_id]
        producer = self.producers[identity]
        producer.tasks.discard(result.task_id)
        current = self._issued.get(lease.key) == lease.task_id
        stale = lease.key < self._floor or lease.generation != self._generation
        split = self._split.get(lease.key)
        duplicate = not stale and (
            lease.task_id in self._superseded
            or lease.key in self._ready
            or lease.key in self._delivered
            or (
                lease.part is not None
                and (split is None or lease.part in split.made or lease.part in split.stalled)
            )
        )
        self._superseded.discard(lease.task_id)
        in_slot = lease.slot is not None and result.slot == lease.slot
        if lease.slot is not None and (stale or duplicate or not in_slot):
            self._free_slot(lease.slot)  # the producer is done with it and nothing will read it
        if stale or duplicate:
            if current:
                del self._issued[lease.key]
            if stale:
                self.counters.results_stale += 1
            else:
                self.counters.results_duplicate += 1
            return None
        try:
            batch = self._validate(lease, result)
        except ProtocolError as exc:
            if in_slot and lease.slot is not None:
                self._free_slot(lease.slot)
            if lease.part is not None:
                self._part_ended(lease, None)  # issued again, as a refused whole batch is
            elif current:  # no other lease is making this batch: issue it again, first
                del self._issued[lease.key]
                self._requeue.appendleft(lease.key)
            raise ResultMismatch(str(exc)) from None
        producer.strikes = 0
        if lease.part is None:  # whole batches only: one-sample tasks would lower the bound
            self._durations.append((time.monotonic() if now is None else now) - lease.issued_at)
            self._typical = None
        if lease.part is not None and split is not None:
            split.made[lease.part] = batch
            split.issued.pop(lease.part, None)
            return self._finish_split(lease.key)
        self._split.pop(lease.key, None)  # a whole batch arrived after all
        self._failures.pop(lease.key, None)
        self._issued.pop(lease.key, None)
        self._superseded.update(
            other.task_id for other in self._leases.values() if other.key == lease.key
        )
        batch = self._with_stalled(batch)
        self._ready[lease.key] = batch
        if in_slot:
            self.counters.results_in_slots += 1
        return batch

    def _validate(self, lease: Lease, result: Result) -> ReadyBatch:
        skipped_rows = [s.index for s in result.skipped]
        if skipped_rows and not _distinct_subset(skipped_rows, lease.rows):
            raise ProtocolError(
                f"result for task {lease.task_id} skips rows that are not in the task"
            )
        expected = len(lease.rows) - len(skipped_rows)
        if result.count != expected:
            raise ProtocolError(
                f"result for task {lease.task_id} has {result.count} images; expected {expected}"
            )
        images = self._images(lease, result, expected)  # the last check: nothing raises after it
        rows = lease.rows[~np.isin(lease.rows, skipped_rows)] if skipped_rows else lease.rows
        producer = self.producers[lease.producer].name
        return ReadyBatch(lease.key, images, rows, result.skipped, producer)

    def _with_stalled(self, batch: ReadyBatch) -> ReadyBatch:
        """``batch`` with the samples its task left out (no producer could make them) listed
        as skipped, in plan order."""
        rows = self._plan_for(batch.key[0]).batch(batch.key[1]).tolist()
        left_out = [self._stalled_rows[row] for row in rows if row in self._stalled_rows]
        if not left_out:
            return batch
        skipped = sorted((*batch.skipped, *left_out), key=lambda s: rows.index(s.index))
        return ReadyBatch(batch.key, batch.images, batch.rows, tuple(skipped), batch.producer)

    def _free_slot(self, slot: int) -> None:
        if self._slots is not None:
            self._slots.release(slot)

    def _images(self, lease: Lease, result: Result, expected: int) -> np.ndarray:
        if result.slot is not None:
            if result.slot != lease.slot or self._slots is None:
                raise ProtocolError(
                    f"result for task {lease.task_id} says its images are in slot {result.slot}; "
                    f"the task lent slot {lease.slot}"
                )
            return self._slots.images(result.slot, expected, self._image_shape, self._dtype)
        buffer = memoryview(result.images)
        expected_bytes = expected * int(np.prod(self._image_shape)) * self._dtype.itemsize
        if buffer.nbytes != expected_bytes:
            raise ProtocolError(
                f"result for task {lease.task_id} carries {buffer.nbytes} bytes; expected "
                f"{expected_bytes} ({expected} images of {self._image_shape} {self._dtype})"
            )
        return np.frombuffer(buffer, dtype=self._dtype).reshape((expected, *self._image_shape))

    # -- consuming -------------------------------------------------------------------------------

    def demand(self, key: Key) -> None:
        """Someone waits for ``key``: whenever it is not under way (now, or later because its
        producer was lost), it is issued first, even past ``max_queue_size``."""
        self._awaited.add(key)

    def take(self, key: Key) -> ReadyBatch | None:
        """The batch for ``key`` if it has arrived; it stays retained while there is room."""
        batch = self._ready.pop(key, None)
        if batch is not None:
            self._delivered[key] = batch
        else:
            batch = self._delivered.get(key)
        if batch is not None:
            self._awaited.discard(key)
        return batch

    def advance_epoch(self, epoch: int) -> None:
        """Move to the start of ``epoch``: everything for earlier epochs is dropped."""
        self.move_to((epoch, 0))

    def move_to(self, position: Key) -> None:
        """Serve from ``position`` = (epoch, batch) on; everything before it is dropped.

        Moving back (resuming an earlier epoch) drops everything and starts again from there.
        """
        if position < self._floor:
            self._generation += 1  # leases in flight now belong to an abandoned stream
            self._cursor = position
            self._ready.clear()
            self._delivered.clear()
            self._issued.clear()
            self._split.clear()
            self._failures.clear()
            self._requeue.clear()
            self._awaited.clear()
        else:
            self._cursor = max(self._cursor, position)
            for store in (self._ready, self._delivered):
                for key in [k for k in store if k < position]:
                    del store[key]
            for key in [k for k in self._issued if k < position]:
                del self._issued[key]
            self._split = {k: v for k, v in self._split.items() if k >= position}
            self._failures = {k: v for k, v in self._failures.items() if k >= position}
            self._requeue = deque(k for k in self._requeue if k >= position)
            self._awaited = {k for k in self._awaited if k >= position}
        self._floor = position
        self.epoch = position[0]


def _valid_entries(entries: tuple[str, ...]) -> tuple[str, ...]:
    """The entries of a producer's ``reads`` that are URL prefixes (others grant nothing)."""
    valid = []
    for entry in entries:
        try:
            AllowList((entry,))
        except ConfigError:
            continue
        valid.append(entry)
    return tuple(valid)


def _distinct_subset(rows: list[int], of: np.ndarray) -> bool:
    distinct = set(rows)
    return len(distinct) == len(rows) and distinct <= set(of.tolist())


def _skipped_of(split: _Split, row: int) -> tuple[Skipped, ...]:
    if row in split.stalled:
        return (split.stalled[row],)
    return split.made[row].skipped if row in split.made else ()

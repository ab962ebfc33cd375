"""Tests for zerofeed.consumer.scheduler: leases, credits, stream order, retention and bad results.

The scheduler is pure bookkeeping, so these tests drive it with protocol objects directly: no sockets.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytest

from zerofeed.common.errors import ProtocolError
from zerofeed.common.plan import EpochPlan
from zerofeed.common.protocol import Hello, Result, Skipped
from zerofeed.consumer.scheduler import (
    SAMPLE_ATTEMPTS,
    SPLIT_AFTER,
    Key,
    Lease,
    ReadyBatch,
    ResultMismatch,
    Scheduler,
)

SHAPE = (2, 2, 3)
PIXELS = int(np.prod(SHAPE))
A, B, C = b"producer-a", b"producer-b", b"producer-c"


def make_scheduler(
    *,
    num_samples: int = 10,
    batch_size: int = 3,
    max_queue_size: int = 100,
    lease_timeout: float = 5.0,
    required: Iterable[str] = (),
    shuffle: bool = False,
) -> Scheduler:
    """10 samples in batches of 3: four batches per epoch, rows (0,1,2) (3,4,5) (6,7,8) (9,)."""

    def plan_for(epoch: int) -> EpochPlan:
        return EpochPlan(
            num_samples=num_samples, batch_size=batch_size, seed=7, epoch=epoch, shuffle=shuffle
        )

    return Scheduler(
        plan_for=plan_for,
        max_queue_size=max_queue_size,
        lease_timeout=lease_timeout,
        required_transforms=frozenset(required),
        image_shape=SHAPE,
        dtype=np.uint8,
    )


def join(
    scheduler: Scheduler,
    identity: bytes,
    credits: int,
    *,
    now: float = 0.0,
    transforms: tuple[str, ...] = (),
) -> None:
    name = identity.decode()
    scheduler.hello(identity, Hello(producer=name, credits=credits, transforms=transforms), now)


def keys(leases: Iterable[Lease]) -> list[Key]:
    return [lease.key for lease in leases]


def images_for(rows: Iterable[int]) -> bytes:
    """One image per row, every pixel equal to the row (mod 256): identifies what arrived."""
    return b"".join(bytes([row % 256]) * PIXELS for row in rows)


def answer(lease: Lease, *, skip: Iterable[int] = ()) -> Result:
    """A correct result for ``lease``, without the rows in ``skip``."""
    skipped = tuple(Skipped(index=row, kind="decode", reason="broken") for row in skip)
    kept = [row for row in lease.rows.tolist() if row not in set(skip)]
    return Result(task_id=lease.task_id, count=len(kept), skipped=skipped, images=images_for(kept))


def complete(scheduler: Scheduler, lease: Lease) -> ReadyBatch:
    batch = scheduler.result(lease.producer, answer(lease))
    assert batch is not None
    return batch


def by_key(leases: Iterable[Lease]) -> dict[Key, Lease]:
    return {lease.key: lease for lease in leases}


# --------------------------------------------------------------------------- issuing


def test_no_producer_no_tasks() -> None:
    scheduler = make_scheduler()
    assert scheduler.assign() == []
    assert scheduler.counters.tasks_issued == 0


def test_tasks_limited_by_credits() -> None:
    scheduler = make_scheduler()
    join(scheduler, A, 2)
    first = scheduler.assign()
    assert keys(first) == [(0, 0), (0, 1)]
    assert all(lease.producer == A for lease in first)
    assert scheduler.assign() == []  # no credit left
    complete(scheduler, first[0])
    assert keys(scheduler.assign()) == [(0, 2)]  # one credit came back
    assert scheduler.counters.tasks_issued == 3


def test_credits_of_several_producers_add_up() -> None:
    scheduler = make_scheduler()
    join(scheduler, A, 2)
    join(scheduler, B, 3)
    leases = scheduler.assign()
    assert keys(leases) == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]
    held = {identity: sum(lease.producer == identity for lease in leases) for identity in (A, B)}
    assert held == {A: 2, B: 3}
    assert {p.identity: p.free for p in scheduler.producers.values()} == {A: 0, B: 0}


def test_without_a_free_credit_no_demand_or_take_lets_assign_issue_anything() -> None:
    """``Dispatcher.get`` wakes the I/O thread only when ``has_free_credit()``: when it is false,
    a turn of ``assign()`` issues nothing, whatever was demanded or taken meanwhile."""
    scheduler = make_scheduler(num_samples=30)
    assert not scheduler.has_free_credit()  # nobody to give a task to
    join(scheduler, A, 2)
    assert scheduler.has_free_credit()
    first, second = scheduler.assign()
    assert not scheduler.has_free_credit()
    batch = complete(scheduler, first)
    assert scheduler.has_free_credit()  # the result gave the credit back
    assert len(scheduler.assign()) == 1
    assert not scheduler.has_free_credit()
    assert scheduler.take(batch.key) is not None
    scheduler.demand((1, 0))
    assert scheduler.assign() == []
    complete(scheduler, second)
    assert scheduler.has_free_credit()
    assert keys(scheduler.assign()) == [(1, 0)]  # the awaited batch first, once a credit is back
    lacking = make_scheduler(required=("sepia",))
    join(lacking, A, 2)  # without the transform the batches need: it gets no tasks
    assert not lacking.has_free_credit()
    assert lacking.assign() == []


def test_tasks_limited_by_max_queue_size() -> None:
    scheduler = make_scheduler(max_queue_size=3)
    join(scheduler, A, 50)
    leases = scheduler.assign()
    assert keys(leases) == [(0, 0), (0, 1), (0, 2)]
    assert scheduler.outstanding == 3
    assert scheduler.assign() == []
    complete(scheduler, leases[0])  # ready but not taken: still counts
    assert scheduler.outstanding == 3
    assert scheduler.assign() == []
    assert scheduler.counters.peak_outstanding == 3


def test_lease_rows_come_from_the_plan() -> None:
    scheduler = make_scheduler(shuffle=True)
    join(scheduler, A, 50)
    leases = scheduler.assign()
    for lease in leases:
        plan = EpochPlan(num_samples=10, batch_size=3, seed=7, epoch=lease.key[0], shuffle=True)
        np.testing.assert_array_equal(lease.rows, plan.batch(lease.key[1]))
    assert len({lease.task_id for lease in leases}) == len(leases)  # task ids are unique


def test_stream_order_current_epoch_then_next_only() -> None:
    scheduler = make_scheduler()
    join(scheduler, A, 100)
    leases = scheduler.assign()
    assert keys(leases) == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3)]
    assert scheduler.assign() == []  # never beyond epoch + 1
    assert leases[3].rows.tolist() == [9]  # the last batch is smaller
    scheduler.advance_epoch(1)
    assert keys(scheduler.assign()) == [(2, 0), (2, 1), (2, 2), (2, 3)]


# --------------------------------------------------------------------------- taking and retention


def test_take_returns_the_batch_and_retains_it() -> None:
    scheduler = make_scheduler()
    join(scheduler, A, 1)
    (lease,) = scheduler.assign()
    assert scheduler.take((0, 0)) is None  # not arrived yet
    stored = complete(scheduler, lease)
    batch = scheduler.take((0, 0))
    assert batch is stored
    assert batch.key == (0, 0)
    assert batch.rows.tolist() == [0, 1, 2]
    assert batch.producer == "producer-a"
    assert batch.images.shape == (3, *SHAPE) and batch.images.dtype == np.uint8
    assert batch.images[:, 0, 0, 0].tolist() == [0, 1, 2]
    assert scheduler.take((0, 0)) is batch  # retained for a second read
    assert scheduler.take((0, 1)) is None


def test_retained_batches_evicted_oldest_first_when_room_is_needed() -> None:
    scheduler = make_scheduler(max_queue_size=3)
    join(scheduler, A, 1)  # one credit: one task at a time, one eviction at a time
    for expected in [(0, 0), (0, 1), (0, 2)]:
        (lease,) = scheduler.assign()
        assert lease.key == expected
        complete(scheduler, lease)
    assert scheduler.take((0, 1)) is not None  # delivered first: the oldest
    assert scheduler.take((0, 0)) is not None
    assert scheduler.outstanding == 3  # full ...
    (lease,) = scheduler.assign()  # ... but retained batches make room
    assert lease.key == (0, 3)
    assert scheduler.take((0, 1)) is None  # the oldest delivered went, not the lowest key
    assert scheduler.take((0, 0)) is not None
    complete(scheduler, lease)
    assert keys(scheduler.assign()) == [(1, 0)]
    assert scheduler.take((0, 0)) is None
    assert scheduler.take((0, 2)) is not None  # taken now, so retained


def test_ready_batches_are_never_evicted() -> None:
    scheduler = make_scheduler(max_queue_size=2)
    join(scheduler, A, 50)
    for lease in scheduler.assign():
        complete(scheduler, lease)
    assert scheduler.assign() == []  # both ready, none taken: nothing may go
    assert scheduler.take((0, 0)) is not None
    assert scheduler.take((0, 1)) is not None


def test_retained_batch_not_evicted_when_nothing_is_issued() -> None:
    scheduler = make_scheduler(num_samples=4, batch_size=2, max_queue_size=3)  # 2 batches/epoch
    join(scheduler, A, 50)
    leases = by_key(scheduler.assign())
    assert list(leases) == [(0, 0), (0, 1), (1, 0)]
    for lease in leases.values():
        complete(scheduler, lease)
    scheduler.take((0, 0))
    scheduler.take((0, 1))
    assert keys(scheduler.assign()) == [(1, 1)]  # evicting (0, 0) made the room for it
    assert scheduler.assign() == []  # nothing left to issue up to epoch 1 ...
    assert scheduler.take((0, 1)) is not None  # ... so (0, 1) had no reason to go


def test_demand_issues_first_even_when_queue_is_full() -> None:
    scheduler = make_scheduler(max_queue_size=2)
    join(scheduler, A, 50)
    assert keys(scheduler.assign()) == [(0, 0), (0, 1)]
    scheduler.demand((1, 2))
    assert keys(scheduler.assign()) == [(1, 2)]
    assert scheduler.assign() == []  # only the demanded key went past the limit


def test_demand_jumps_the_queue() -> None:
    scheduler = make_scheduler()
    join(scheduler, A, 2)
    scheduler.demand((0, 3))
    assert keys(scheduler.assign()) == [(0, 3), (0, 0)]


def test_demand_of_an_issued_or_arrived_key_issues_nothing_more() -> None:
    scheduler = make_scheduler(max_queue_size=2)
    join(scheduler, A, 50)
    leases = scheduler.assign()
    scheduler.demand((0, 0))  # in flight
    assert scheduler.assign() == []
    complete(scheduler, leases[0])
    scheduler.demand((0, 0))  # ready
    assert scheduler.assign() == []
    assert scheduler.counters.tasks_issued == 2


def test_demand_needs_a_free_credit() -> None:
    scheduler = make_scheduler()
    join(scheduler, A, 1)
    assert keys(scheduler.assign()) == [(0, 0)]
    scheduler.demand((0, 2))
    assert scheduler.assign() == []
    join(scheduler, B, 1)
    assert keys(scheduler.assign()) == [(0, 2)]


# --------------------------------------------------------------------------- losing producers


def test_goodbye_requeues_leases_at_the_front_in_order() -> None:
    scheduler = make_scheduler(max_queue_size=3)
    join(scheduler, A, 2)
    assert keys(scheduler.assign()) == [(0, 0), (0, 1)]
    join(scheduler, B, 1)
    assert keys(scheduler.assign()) == [(0, 2)]
    gone = scheduler.goodbye(A)
    assert gone is not None and gone.identity == A
    assert A not in scheduler.producers
    assert scheduler.counters.tasks_reissued == 2
    join(scheduler, C, 5)
    again = scheduler.assign()
    assert keys(again) == [(0, 0), (0, 1)]  # back at the front, ahead of (0, 3)
    assert all(lease.producer == C for lease in again)
    assert scheduler.goodbye(A) is None  # a second goodbye is harmless
    assert scheduler.counters.tasks_reissued == 2


def test_goodbye_of_unknown_producer() -> None:
    scheduler = make_scheduler()
    assert scheduler.goodbye(b"nobody") is None
    assert scheduler.counters.tasks_reissued == 0


def test_expire_requeues_silent_producers() -> None:
    scheduler = make_scheduler(lease_timeout=5.0)
    join(scheduler, A, 2, now=0.0)
    join(scheduler, B, 1, now=0.0)
    leases = scheduler.assign()
    a_keys = [lease.key for lease in leases if lease.producer == A]
    assert scheduler.heard_from(B, 4.0)
    assert not scheduler.heard_from(b"nobody", 4.0)
    assert scheduler.expire(5.0) == []  # exactly the timeout is not yet too long
    lost = scheduler.expire(8.0)
    assert [p.identity for p in lost] == [A]
    assert set(scheduler.producers) == {B}
    assert scheduler.counters.producers_lost == 1
    assert scheduler.counters.tasks_reissued == 2
    join(scheduler, C, 10, now=8.0)
    assert keys(scheduler.assign())[:2] == a_keys


def test_producer_seconds_sum_each_workers_connected_time_and_never_go_down() -> None:
    """The divisor of a rate per worker while workers come and go: A from 0 s, B from 10 s to
    its BYE at 15 s, C from 12 s until declared lost at 30 s, A's re-hello at 20 s."""
    scheduler = make_scheduler(lease_timeout=5.0)
    seen: list[float] = []

    def total(now: float) -> float:
        seen.append(scheduler.producer_seconds(now))
        return seen[-1]

    join(scheduler, A, 1, now=0.0)
    assert total(10.0) == 10.0
    join(scheduler, B, 1, now=10.0)
    join(scheduler, C, 1, now=12.0)
    assert total(14.0) == 14.0 + 4.0 + 2.0
    scheduler.goodbye(B, now=15.0)
    assert total(15.0) == 15.0 + 5.0 + 3.0
    join(scheduler, A, 1, now=20.0)  # it restarted: one worker all along
    assert scheduler.heard_from(A, 29.0)
    assert [p.identity for p in scheduler.expire(30.0)] == [C]  # silent since 12 s
    assert total(30.0) == 30.0 + 5.0 + 18.0
    assert (total(40.0) - seen[-2]) / 10.0 == 1.0  # the mean number connected: A alone
    assert seen == sorted(seen)


def test_rehello_releases_leases() -> None:
    scheduler = make_scheduler()
    join(scheduler, A, 2)
    old = scheduler.assign()
    join(scheduler, A, 2)  # restarted: what it held is gone
    assert scheduler.counters.tasks_reissued == 2
    new = scheduler.assign()
    assert keys(new) == keys(old)
    assert {lease.task_id for lease in new}.isdisjoint({lease.task_id for lease in old})
    with pytest.raises(ProtocolError, match="not leased to this sender"):
        scheduler.result(A, answer(old[0]))
    assert scheduler.take((0, 0)) is None
    complete(scheduler, new[0])
    assert scheduler.take((0, 0)) is not None


def test_producer_without_required_transforms_gets_no_tasks() -> None:
    scheduler = make_scheduler(required={"sepia"})
    join(scheduler, A, 4, transforms=("blur",))
    assert not scheduler.producers[A].capable
    assert scheduler.producers[A].free == 0
    assert scheduler.assign() == []
    scheduler.demand((0, 0))
    assert scheduler.assign() == []
    join(scheduler, B, 1, transforms=("blur", "sepia"))
    leases = scheduler.assign()
    assert [(lease.key, lease.producer) for lease in leases] == [((0, 0), B)]


# --------------------------------------------------------------------------- refused results


def assert_nothing_stored(scheduler: Scheduler, key: Key) -> None:
    assert scheduler.take(key) is None


def test_result_from_other_producer_refused() -> None:
    scheduler = make_scheduler()
    join(scheduler, A, 1)
    join(scheduler, B, 1)
    leases = by_key(scheduler.assign())
    lease = leases[(0, 0)]
    other = B if lease.producer == A else A
    with pytest.raises(ProtocolError, match=f"task {lease.task_id}.*not leased to this sender"):
        scheduler.result(other, answer(lease))
    assert_nothing_stored(scheduler, (0, 0))
    assert lease.task_id in scheduler.producers[lease.producer].tasks  # the holder keeps it
    complete(scheduler, lease)  # and can still deliver it
    assert scheduler.take((0, 0)) is not None


def test_result_for_unknown_task_refused() -> None:
    scheduler = make_scheduler()
    join(scheduler, A, 1)
    (lease,) = scheduler.assign()
    forged = Result(task_id=999, count=3, images=images_for([0, 1, 2]))
    with pytest.raises(ProtocolError, match="task 999"):
        scheduler.result(A, forged)
    assert_nothing_stored(scheduler, (0, 0))
    assert scheduler.producers[A].tasks == {lease.task_id}  # the real lease is untouched


def test_result_twice_refused() -> None:
    scheduler = make_scheduler()
    join(scheduler, A, 1)
    (lease,) = scheduler.assign()
    first = complete(scheduler, lease)
    with pytest.raises(ProtocolError):
        scheduler.result(A, answer(lease))
    assert scheduler.take((0, 0)) is first


def test_late_result_after_expiry_refused() -> None:
    scheduler = make_scheduler(lease_timeout=1.0)
    join(scheduler, A, 1, now=0.0)
    (lease,) = scheduler.assign()
    scheduler.expire(10.0)
    with pytest.raises(ProtocolError, match="not leased"):
        scheduler.result(A, answer(lease))
    assert_nothing_stored(scheduler, (0, 0))
    join(scheduler, A, 1, now=10.0)  # back, but the old lease is not its own any more
    with pytest.raises(ProtocolError, match="not leased"):
        scheduler.result(A, answer(lease))
    assert_nothing_stored(scheduler, (0, 0))
    (again,) = scheduler.assign()
    assert again.key == (0, 0) and again.task_id != lease.task_id


def bad_results(lease: Lease) -> dict[str, tuple[Result, str]]:
    rows = lease.rows.tolist()
    good = answer(lease)
    skip_one = Skipped(index=rows[0], kind="decode", reason="x")
    return {
        "count too high": (
            Result(task_id=lease.task_id, count=4, images=images_for([*rows, 0])),
            "has 4 images; expected 3",
        ),
        "count too low": (
            Result(task_id=lease.task_id, count=2, images=images_for(rows[:2])),
            "has 2 images; expected 3",
        ),
        "short buffer": (
            Result(task_id=lease.task_id, count=3, images=good.images[:-1]),
            f"carries {3 * PIXELS - 1} bytes; expected {3 * PIXELS}",
        ),
        "long buffer": (
            Result(task_id=lease.task_id, count=3, images=good.images + b"\x00"),
            f"carries {3 * PIXELS + 1} bytes",
        ),
        "skip not counted": (
            Result(task_id=lease.task_id, count=3, skipped=(skip_one,), images=good.images),
            "has 3 images; expected 2",
        ),
        "skip foreign row": (
            Result(
                task_id=lease.task_id,
                count=2,
                skipped=(Skipped(index=99, kind="decode", reason="x"),),
                images=images_for(rows[1:]),
            ),
            "skips rows that are not in the task",
        ),
        "skip twice": (
            Result(
                task_id=lease.task_id,
                count=1,
                skipped=(skip_one, skip_one),
                images=images_for(rows[2:]),
            ),
            "skips rows that are not in the task",
        ),
    }


@pytest.mark.parametrize("case", list(bad_results(Lease(0, (0, 0), np.arange(3), A))))
def test_mismatched_result_refused_and_requeued(case: str) -> None:
    scheduler = make_scheduler()
    join(scheduler, A, 1)
    (lease,) = scheduler.assign()
    result, message = bad_results(lease)[case]
    with pytest.raises(ProtocolError, match=message):
        scheduler.result(A, result)
    assert_nothing_stored(scheduler, (0, 0))
    assert scheduler.producers[A].free == 1  # the credit came back
    (again,) = scheduler.assign()
    assert again.key == (0, 0)  # re-queued at the front, not skipped
    complete(scheduler, again)
    assert scheduler.take((0, 0)) is not None


def test_skipped_rows_removed_in_order() -> None:
    scheduler = make_scheduler(num_samples=12, batch_size=6, shuffle=True)
    join(scheduler, A, 1)
    (lease,) = scheduler.assign()
    rows = lease.rows.tolist()
    skip = [rows[4], rows[1]]  # reported out of order
    batch = scheduler.result(A, answer(lease, skip=skip))
    assert batch is not None
    kept = [row for row in rows if row not in skip]
    assert batch.rows.tolist() == kept
    assert batch.images.shape == (4, *SHAPE)
    assert batch.images[:, 0, 0, 0].tolist() == kept
    assert [s.index for s in batch.skipped] == skip


def test_every_row_skipped_gives_an_empty_batch() -> None:
    scheduler = make_scheduler()
    join(scheduler, A, 1)
    (lease,) = scheduler.assign()
    batch = scheduler.result(A, answer(lease, skip=lease.rows.tolist()))
    assert batch is not None
    assert batch.rows.tolist() == []
    assert batch.images.shape == (0, *SHAPE)


# --------------------------------------------------------------------------- epochs


def test_advance_epoch_drops_older_epochs_and_late_results_are_stale() -> None:
    scheduler = make_scheduler()
    join(scheduler, A, 100)
    leases = by_key(scheduler.assign())
    complete(scheduler, leases[(0, 0)])
    scheduler.take((0, 0))
    complete(scheduler, leases[(0, 1)])  # ready, never taken
    complete(scheduler, leases[(1, 0)])
    scheduler.advance_epoch(1)
    assert scheduler.epoch == 1
    assert scheduler.take((0, 0)) is None
    assert scheduler.take((0, 1)) is None
    assert scheduler.take((1, 0)) is not None  # the next epoch's lookahead is kept
    assert scheduler.result(A, answer(leases[(0, 2)])) is None  # late, for an old epoch
    assert scheduler.counters.results_stale == 1
    assert scheduler.take((0, 2)) is None
    assert keys(scheduler.assign()) == [(2, 0), (2, 1), (2, 2), (2, 3)]
    scheduler.demand((0, 3))  # an old epoch is never issued again
    assert scheduler.assign() == []


def test_advance_epoch_drops_requeued_old_keys() -> None:
    scheduler = make_scheduler()
    join(scheduler, A, 5)
    scheduler.assign()  # (0, 0) .. (0, 3), (1, 0)
    scheduler.goodbye(A)
    scheduler.advance_epoch(1)
    join(scheduler, B, 100)
    assert keys(scheduler.assign()) == [
        (1, 0),
        (1, 1),
        (1, 2),
        (1, 3),
        (2, 0),
        (2, 1),
        (2, 2),
        (2, 3),
    ]


def test_stale_result_returns_the_credit() -> None:
    scheduler = make_scheduler()
    join(scheduler, A, 1)
    (lease,) = scheduler.assign()
    scheduler.advance_epoch(1)
    assert scheduler.producers[A].free == 0  # it is still working on the old task
    assert scheduler.result(A, answer(lease)) is None
    assert scheduler.producers[A].free == 1
    assert keys(scheduler.assign()) == [(1, 0)]


def test_awaited_batch_lost_with_its_producer_is_reissued_past_a_full_queue() -> None:
    """Waiting for batch 0, whose producer dies while the queue is full of later batches."""
    scheduler = make_scheduler(max_queue_size=3)
    join(scheduler, A, 1)
    (first,) = scheduler.assign()
    assert first.key == (0, 0)
    scheduler.demand((0, 0))  # __getitem__(0) waits; the batch is under way, so nothing to do
    join(scheduler, B, 2)
    later = scheduler.assign()
    assert keys(later) == [(0, 1), (0, 2)]
    for lease in later:
        scheduler.result(B, answer(lease))  # ready, not taken: the queue is full (3 of 3)
    assert scheduler.assign() == []
    scheduler.expire(now=60.0)  # A is lost with batch 0
    join(scheduler, B, 2, now=60.0)
    (again,) = scheduler.assign()
    assert again.key == (0, 0), "the awaited batch must be re-issued despite the full queue"
    scheduler.result(B, answer(again))
    assert scheduler.take((0, 0)) is not None


def test_closed_connection_loses_its_producers_at_once() -> None:
    scheduler = make_scheduler()
    scheduler.hello(A, Hello(producer="a", credits=2), 0.0, connection=7)
    scheduler.hello(B, Hello(producer="b", credits=2), 0.0, connection=8)
    leases = scheduler.assign()
    held_by_a = [lease.key for lease in leases if lease.producer == A]
    assert held_by_a
    lost = scheduler.disconnected(7)
    assert [p.identity for p in lost] == [A]
    assert set(scheduler.producers) == {B}
    assert scheduler.counters.producers_lost == 1
    assert scheduler.counters.tasks_reissued == len(held_by_a)
    assert scheduler.disconnected(7) == []


# --------------------------------------------------------------------------- deadlines, strikes


def test_an_overdue_task_goes_to_another_producer_and_the_first_result_wins() -> None:
    scheduler = make_scheduler(max_queue_size=1)
    join(scheduler, A, 1)
    (stuck,) = scheduler.assign(now=0.0)
    join(scheduler, B, 1)
    bound = scheduler.task_bound()
    assert scheduler.overdue(bound - 1) == []
    assert scheduler.overdue(bound + 1) == [stuck]
    (again,) = scheduler.assign(now=bound + 1)
    assert again.key == stuck.key and again.producer == B  # never back to the stuck one
    complete(scheduler, again)
    assert scheduler.take(stuck.key) is not None
    assert scheduler.result(A, answer(stuck)) is None  # the late twin: dropped, counted
    assert scheduler.counters.results_duplicate == 1
    assert scheduler.counters.tasks_overdue == 1
    assert scheduler.producers[A].free == 1  # its credit came back


def test_the_late_producer_may_still_win() -> None:
    scheduler = make_scheduler(max_queue_size=1)
    join(scheduler, A, 1)
    (slow,) = scheduler.assign(now=0.0)
    join(scheduler, B, 1)
    scheduler.overdue(scheduler.task_bound() + 1)
    (twin,) = scheduler.assign()
    complete(scheduler, slow)
    assert scheduler.result(B, answer(twin)) is None
    assert scheduler.counters.results_duplicate == 1
    assert scheduler.outstanding == 1  # the one batch, ready: nothing else in flight


def test_no_other_producer_no_speculation() -> None:
    scheduler = make_scheduler(max_queue_size=1)
    join(scheduler, A, 2)
    assert len(scheduler.assign(now=0.0)) == 1
    assert scheduler.overdue(10_000.0) == []  # re-issuing to the producer that holds it is moot


def test_the_next_deadline_is_the_first_lease_to_run_out_or_task_to_become_overdue() -> None:
    scheduler = make_scheduler(lease_timeout=5.0, max_queue_size=1)
    assert scheduler.next_deadline(0.0) is None  # no producer, no task: nothing is ever due
    join(scheduler, A, 1, now=0.0)
    join(scheduler, B, 1, now=2.0)
    assert scheduler.next_deadline(0.0) == 5.0  # A's lease
    assert len(scheduler.assign(now=1.0)) == 1
    bound = scheduler.task_bound()
    assert bound > 6.0
    assert scheduler.next_deadline(5.0) == 7.0  # A's lease is past: B's
    assert scheduler.heard_from(A, 4.0) and scheduler.heard_from(B, 4.0)
    assert scheduler.next_deadline(5.0) == 9.0
    assert scheduler.next_deadline(9.0) == 1.0 + bound  # the task's, once every lease is past
    assert scheduler.next_deadline(1.0 + bound) is None
    assert [p.identity for p in scheduler.expire(9.5)] == [A, B]
    assert scheduler.next_deadline(9.5) is None  # the task went back with its producer


def test_the_task_bound_adapts_to_the_tasks_seen() -> None:
    scheduler = make_scheduler()
    join(scheduler, A, 100)
    assert scheduler.task_bound() == 120.0  # nothing seen yet: the ceiling
    for lease in scheduler.assign(now=0.0):
        scheduler.result(A, answer(lease), now=5.0)
    assert scheduler.task_bound() == 20.0  # four times the median, 5 s
    fixed = Scheduler(
        plan_for=lambda epoch: EpochPlan(num_samples=4, batch_size=2, seed=0, epoch=epoch),
        max_queue_size=4,
        lease_timeout=5.0,
        required_transforms=frozenset(),
        image_shape=SHAPE,
        dtype=np.uint8,
        task_timeout=2.5,
    )
    assert fixed.task_bound() == 2.5


def test_a_producer_whose_results_keep_failing_gets_no_more_tasks() -> None:
    scheduler = make_scheduler(max_queue_size=1)
    join(scheduler, A, 1)
    refused = None
    for _ in range(3):
        (lease,) = scheduler.assign()
        assert lease.producer == A and lease.key == (0, 0)  # the batch is issued again at once
        wrong = Result(task_id=lease.task_id, count=len(lease.rows), images=b"short")
        with pytest.raises(ResultMismatch, match="bytes"):
            scheduler.result(A, wrong)
        refused = scheduler.strike(A, "carries 5 bytes")
    assert refused is not None and "3 results in a row" in (refused.refused or "")
    assert scheduler.producers[A].free == 0
    join(scheduler, A, 1)  # reconnecting under the same name does not lift it
    assert scheduler.producers[A].refused is not None and scheduler.assign() == []
    join(scheduler, B, 1)
    (lease,) = scheduler.assign()
    assert lease.producer == B and lease.key == (0, 0)


def test_a_good_result_clears_the_strikes() -> None:
    scheduler = make_scheduler(max_queue_size=1)
    join(scheduler, A, 1)
    for _ in range(2):
        (lease,) = scheduler.assign()
        with pytest.raises(ResultMismatch):
            scheduler.result(A, Result(task_id=lease.task_id, count=0, images=b""))
        assert scheduler.strike(A, "wrong") is None
    (lease,) = scheduler.assign()
    complete(scheduler, lease)
    assert scheduler.producers[A].strikes == 0


# --------------------------------------------------------------------------- split batches


def lose_whole_batch(scheduler: Scheduler, times: int) -> None:
    """Producer A takes batch (0, 0) and is lost with it, ``times`` times."""
    for _ in range(times):
        join(scheduler, A, 1)
        (lease,) = scheduler.assign(now=0.0)
        assert lease.key == (0, 0) and lease.part is None
        scheduler.lose(A)


def test_a_batch_that_keeps_failing_is_made_sample_by_sample() -> None:
    scheduler = make_scheduler(max_queue_size=1)
    lose_whole_batch(scheduler, SPLIT_AFTER)
    join(scheduler, B, 3)
    parts = by_part(scheduler.assign(now=0.0))
    assert sorted(parts) == [0, 1, 2] and all(p.key == (0, 0) for p in parts.values())
    assert scheduler.result(B, answer(parts[0])) is None  # not whole yet
    assert scheduler.result(B, answer(parts[2])) is None
    join(scheduler, C, 1)
    for attempt in range(SAMPLE_ATTEMPTS):  # row 1 never comes back, from anyone
        (late,) = scheduler.overdue(10_000.0 * (attempt + 1))
        assert late.part == 1
        if attempt + 1 < SAMPLE_ATTEMPTS:
            (again,) = scheduler.assign(now=10_000.0 * (attempt + 1))
            assert again.part == 1 and again.producer == C  # not back to the stuck one
    batch = scheduler.take((0, 0))
    assert batch is not None
    assert batch.rows.tolist() == [0, 2]
    assert [(s.index, s.kind) for s in batch.skipped] == [(1, "stalled")]
    assert "hangs or crashes producers" in batch.skipped[0].reason
    assert batch.images.reshape(2, -1)[:, 0].tolist() == [0, 2]  # each row's own pixels


def test_a_whole_result_after_the_split_still_wins() -> None:
    scheduler = make_scheduler(max_queue_size=1)
    lose_whole_batch(scheduler, SPLIT_AFTER - 1)
    join(scheduler, A, 1)
    (slow,) = scheduler.assign(now=0.0)
    join(scheduler, B, 1)
    scheduler.overdue(10_000.0)  # the third failure: split
    (part,) = scheduler.assign(now=10_000.0)
    assert part.part is not None
    complete(scheduler, slow)  # the slow whole batch arrives after all
    assert scheduler.result(B, answer(part)) is None  # its part is a duplicate now
    batch = scheduler.take((0, 0))
    assert batch is not None and batch.rows.tolist() == [0, 1, 2] and not batch.skipped


def by_part(leases: Iterable[Lease]) -> dict[int, Lease]:
    return {lease.part: lease for lease in leases if lease.part is not None}


def test_idle_producers_take_turns_and_a_new_one_gets_the_next_task() -> None:
    """With the trainer setting the pace (one batch taken, one task issued), every producer has
    all its credits free each time: they take turns, and one that joins mid-run is used at once
    (it once got nothing in a compose run scaled from one producer to three)."""
    scheduler = make_scheduler(num_samples=30, max_queue_size=1)
    join(scheduler, A, 2)
    join(scheduler, B, 2)
    served = []
    for _ in range(4):
        (lease,) = scheduler.assign()
        served.append(lease.producer)
        batch = complete(scheduler, lease)
        assert scheduler.take(batch.key) is not None
    assert served == [A, B, A, B]
    join(scheduler, C, 2)
    (lease,) = scheduler.assign()
    assert lease.producer == C

"""Local producers write batches into the consumer's shared memory: same bytes, slots accounted.

The scheduler tests drive a real :class:`SlotPool` (a real file in ``/dev/shm``) with protocol
objects; the end-to-end tests use real producer processes and check every sample once.
"""

from __future__ import annotations

import errno
import gc
import os
import signal
import stat
from collections import Counter
from pathlib import Path

import numpy as np
import psutil
import pytest

from tests.conftest import ID_SIZE, ids_of, wait_until, write_id_dataset
from zerofeed.common.errors import ConfigError, ProtocolError
from zerofeed.common.plan import EpochPlan
from zerofeed.common.protocol import Bye, Hello, Result, decode, encode
from zerofeed.consumer import FeedSequence
from zerofeed.consumer.scheduler import Lease, Scheduler
from zerofeed.consumer.slots import SlotPool
from zerofeed.status import format_status

SHAPE = (2, 2, 3)
A, B = b"producer-a", b"producer-b"


@pytest.fixture
def pool(tmp_path: Path) -> SlotPool:
    slots = SlotPool(slot_bytes=3 * int(np.prod(SHAPE)), count=4, directory=tmp_path)
    yield slots
    slots.close()


def scheduler_with(pool: SlotPool) -> Scheduler:
    def plan_for(epoch: int) -> EpochPlan:
        return EpochPlan(num_samples=12, batch_size=3, seed=1, epoch=epoch, shuffle=False)

    return Scheduler(
        plan_for=plan_for,
        max_queue_size=100,
        lease_timeout=5.0,
        required_transforms=frozenset(),
        image_shape=SHAPE,
        dtype=np.dtype(np.uint8),
        slots=pool,
    )


def join(scheduler: Scheduler, identity: bytes, credits: int, slots: str) -> None:
    hello = Hello(producer=identity.decode(), credits=credits, slots=slots)
    scheduler.hello(identity, hello, 0.0)


def write_slot(pool: SlotPool, lease: Lease) -> Result:
    """What a producer does: the rows' bytes into the lease's slot, then a slotted result."""
    assert lease.slot is not None
    count = len(lease.rows)
    target = np.frombuffer(memoryview(pool._file.buffer(lease.slot, count * 12)), np.uint8)
    target[:] = np.repeat(lease.rows.astype(np.uint8), 12)
    return Result(task_id=lease.task_id, count=count, slot=lease.slot)


def test_slots_go_to_producers_that_mapped_the_file_only(pool: SlotPool) -> None:
    scheduler = scheduler_with(pool)
    join(scheduler, A, 2, str(pool.path))
    join(scheduler, B, 2, "/dev/shm/someone-elses")
    leases = scheduler.assign()
    slotted = {lease.producer: lease.slot for lease in leases}
    assert slotted[B] is None
    assert [lease.slot for lease in leases if lease.producer == A] == [0, 1]
    assert pool.free == 2


def test_a_batch_in_a_slot_frees_it_when_the_last_view_is_dropped(pool: SlotPool) -> None:
    scheduler = scheduler_with(pool)
    join(scheduler, A, 1, str(pool.path))
    (lease,) = scheduler.assign()
    batch = scheduler.result(A, write_slot(pool, lease))
    assert batch is not None
    assert batch.images[:, 0, 0, 0].tolist() == lease.rows.tolist()
    taken = scheduler.take(lease.key)
    assert taken is not None
    view = taken.images[1:]
    del batch, taken
    scheduler.move_to((1, 0))  # the scheduler lets go of the epoch's batches
    gc.collect()
    assert pool.free == 3, "a view of the batch is still alive"
    assert view[0, 0, 0, 0] == lease.rows[1]
    del view
    gc.collect()
    assert pool.free == 4


def test_lost_producer_quarantines_its_slots_and_bye_returns_unstarted_ones(
    pool: SlotPool,
) -> None:
    scheduler = scheduler_with(pool)
    join(scheduler, A, 2, str(pool.path))
    scheduler.assign()
    scheduler.lose(A)  # it may still be writing: never lend those slots again
    assert (pool.free, pool.quarantined) == (2, 2)
    join(scheduler, B, 2, str(pool.path))
    leases = scheduler.assign()
    assert sorted(lease.slot for lease in leases) == [2, 3]
    scheduler.goodbye(B, (leases[0].task_id,))  # handed back unstarted: free; the other: not
    assert (pool.free, pool.quarantined) == (1, 3)


def test_stale_and_framed_results_free_their_slot(pool: SlotPool) -> None:
    scheduler = scheduler_with(pool)
    join(scheduler, A, 2, str(pool.path))
    first, second = scheduler.assign()
    scheduler.move_to((1, 0))
    assert scheduler.result(A, write_slot(pool, first)) is None  # stale: nothing reads it
    framed = Result(task_id=second.task_id, count=3, images=bytes(36))  # it sent a frame instead
    assert scheduler.result(A, framed) is None
    assert pool.free == 4


def test_a_result_naming_another_slot_is_refused(pool: SlotPool) -> None:
    scheduler = scheduler_with(pool)
    join(scheduler, A, 1, str(pool.path))
    (lease,) = scheduler.assign()
    forged = Result(task_id=lease.task_id, count=3, slot=3)
    with pytest.raises(ProtocolError, match="slot 3"):
        scheduler.result(A, forged)
    assert pool.free == 4


def test_slotted_messages_round_trip_without_a_frame() -> None:
    result = Result(task_id=5, count=2, slot=7)
    frames = encode(result)
    assert len(frames) == 1
    assert decode(frames) == Result(task_id=5, count=2, slot=7)
    with pytest.raises(ProtocolError, match="1 frame"):  # a slot and a frame: which is it?
        decode([*encode(Result(task_id=5, count=2, slot=7))[:1], b"x"])
    assert decode(encode(Bye(returned=(1,)))) == Bye(returned=(1,))


def test_the_slot_file_is_private_and_removed_on_close(tmp_path: Path) -> None:
    pool = SlotPool(slot_bytes=64, count=2, directory=tmp_path)
    assert stat.S_IMODE(pool.path.stat().st_mode) == 0o600
    pool.close()
    assert not pool.path.exists()


# --------------------------------------------------------------------------- end to end


@pytest.mark.usefixtures("no_leftover_processes")
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_shared_memory_batches_equal_socket_batches(tmp_path: Path, dtype: str) -> None:
    manifest = write_id_dataset(tmp_path, 70)
    augment = {"random_resized_crop": {"scale": [0.5, 1.0]}, "horizontal_flip": True}

    def two_epochs(shared_memory: bool) -> tuple[list[np.ndarray], int]:
        with FeedSequence(
            manifest,
            batch_size=8,
            image_size=ID_SIZE,
            seed=5,
            local_producers=2,
            augment=augment,
            dtype=dtype,
            shared_memory=shared_memory,
        ) as seq:
            batches = []
            for _ in range(2):
                batches += [seq[i][0].copy() for i in range(len(seq))]
                seq.on_epoch_end()
            pool = seq.feed.status()["shared_memory"]
            return batches, pool["slots"] - pool["free"] if pool is not None else -1

    shared, _ = two_epochs(True)
    over_socket, no_pool = two_epochs(False)
    assert no_pool == -1
    assert all(np.array_equal(a, b) for a, b in zip(shared, over_socket, strict=True))
    assert len(shared) == 2 * 9


@pytest.mark.usefixtures("no_leftover_processes")
def test_batches_held_past_the_pool_stay_intact_and_outlive_close(tmp_path: Path) -> None:
    manifest = write_id_dataset(tmp_path, 200)
    with FeedSequence(
        manifest, batch_size=8, image_size=ID_SIZE, seed=2, local_producers=2, max_queue_size=4
    ) as seq:
        held = [seq[i][0] for i in range(len(seq))]  # 25 batches held, 6 slots: the rest by socket
        path = seq.feed.shared_memory_path
        assert path is not None
        state = seq.feed.status()["shared_memory"]
        assert state["slots"] == 4 + 2 and state["free"] == 0, "held batches keep their slots"
        assert "shared memory: 6 batch slots" in format_status(seq.feed.status())
    assert not path.exists()
    rows = [row for images in held for row in ids_of(images)]
    assert Counter(rows) == Counter(range(200)), "a held batch was overwritten"


@pytest.mark.usefixtures("no_leftover_processes")
def test_sigkilled_local_worker_loses_nothing_with_shared_memory(tmp_path: Path) -> None:
    manifest = write_id_dataset(tmp_path, 240)
    with FeedSequence(
        manifest,
        batch_size=8,
        image_size=ID_SIZE,
        seed=4,
        local_producers=3,
        heartbeat_interval=0.25,
        lease_timeout=2.0,
    ) as seq:
        rows = [r for i in range(4) for r in ids_of(seq[i][0])]
        wait_until(lambda: seq.stats.producers_connected == 3)
        workers = psutil.Process(seq.feed.local_producers_pid).children()
        assert workers
        os.kill(workers[0].pid, signal.SIGKILL)
        rows += [r for i in range(4, len(seq)) for r in ids_of(seq[i][0])]
        assert Counter(rows) == Counter(range(240))
        seq.on_epoch_end()
        rows = [r for i in range(len(seq)) for r in ids_of(seq[i][0])]
        assert Counter(rows) == Counter(range(240))


def no_room(fd: int, offset: int, length: int) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_pool_without_room_says_how_to_make_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "posix_fallocate", no_room)
    with pytest.raises(ConfigError, match="shm-size") as caught:
        SlotPool(slot_bytes=1 << 20, count=3, directory=tmp_path)
    assert "shared_memory=False" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("no_leftover_processes")
def test_without_room_for_slots_batches_go_over_the_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    manifest = write_id_dataset(tmp_path, 40)
    monkeypatch.setattr(os, "posix_fallocate", no_room)
    with FeedSequence(manifest, batch_size=8, image_size=ID_SIZE, local_producers=1) as seq:
        rows = [row for i in range(len(seq)) for row in ids_of(seq[i][0])]
        assert seq.shared_memory_bytes == 0
    assert Counter(rows) == Counter(range(40))
    assert "over the socket" in caplog.text


def test_reserved_slots_are_counted_from_the_start(tmp_path: Path) -> None:
    pool = SlotPool(slot_bytes=1 << 20, count=3, directory=tmp_path)
    try:
        assert pool.resident_bytes >= 3 << 20
    finally:
        pool.close()
    assert pool.resident_bytes == 0

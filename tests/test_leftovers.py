"""What a killed trainer leaves on the machine is removed by the next start, whatever the pids,
and a SIGTERM leaves nothing at all (issue 12). Real trainer processes, real /dev/shm."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import ID_SIZE
from zerofeed.common.leftovers import OwnerLock, remove_stale
from zerofeed.consumer import FeedSequence
from zerofeed.consumer.slots import SlotPool

pytestmark = pytest.mark.usefixtures("no_leftover_processes")

TRAINER = textwrap.dedent(
    """
    import json, sys, time
    from zerofeed.consumer import FeedSequence
    feed = FeedSequence(sys.argv[1], batch_size=10, image_size=(12, 10), local_producers=1)
    feed[0]
    print(json.dumps({
        "slots": str(feed.feed.shared_memory_path),
        "folder": feed.endpoint.removeprefix("ipc://").rsplit("/", 1)[0],
        "producers": feed.feed.local_producers_pid,
    }), flush=True)
    while True:
        for i in range(len(feed)):
            feed[i]
        feed.on_epoch_end()
    """
)


def start_trainer(manifest: Path) -> tuple[subprocess.Popen, dict[str, object]]:
    import json

    trainer = subprocess.Popen(
        [sys.executable, "-c", TRAINER, str(manifest)], stdout=subprocess.PIPE, text=True
    )
    assert trainer.stdout is not None
    owned = json.loads(trainer.stdout.readline())
    trainer.stdout.close()
    return trainer, owned


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.05)
    return False


def semaphores() -> set[str]:
    return {name for name in os.listdir("/dev/shm") if name.startswith("sem.")}


def test_sigterm_is_a_clean_stop(id_dataset: Path) -> None:
    before = semaphores()
    trainer, owned = start_trainer(id_dataset)
    assert Path(str(owned["slots"])).exists() and Path(str(owned["folder"])).is_dir()
    trainer.send_signal(signal.SIGTERM)
    assert trainer.wait(timeout=30) == -signal.SIGTERM  # still ended by the signal
    assert not Path(str(owned["slots"])).exists(), "the slot file went with the trainer"
    assert not Path(str(owned["folder"])).exists(), "so did its private folder"
    assert gone_within(int(str(owned["producers"])), 20), "and its local producers"
    assert semaphores() <= before


def test_what_a_sigkill_leaves_the_next_start_removes(id_dataset: Path) -> None:
    before = semaphores()
    trainer, owned = start_trainer(id_dataset)
    trainer.kill()
    trainer.wait(timeout=30)
    assert gone_within(int(str(owned["producers"])), 20), "producers exit with their trainer"
    slots, folder = Path(str(owned["slots"])), Path(str(owned["folder"]))
    assert slots.exists() and folder.exists()  # nothing could run at a SIGKILL
    with FeedSequence(id_dataset, batch_size=10, image_size=ID_SIZE, local_producers=1) as seq:
        seq[0]
    assert not slots.exists() and not folder.exists()
    assert semaphores() <= before, "no named semaphore left by the killed producers"


def test_only_this_users_unowned_files_are_removed(tmp_path: Path) -> None:
    uid = os.getuid()
    stale = tmp_path / f"zerofeed-slots-{uid}-stale"
    stale.write_bytes(b"x")
    held = tmp_path / f"zerofeed-slots-{uid}-held"
    lock = OwnerLock(held)  # a live owner (this process, as a PID-1 trainer would be)
    others = tmp_path / f"zerofeed-slots-{uid + 1}-theirs"
    others.write_bytes(b"x")
    if uid == 0:
        os.chown(others, 12345, 12345)
    try:
        assert remove_stale(tmp_path, f"zerofeed-slots-{uid}-*") == 1
        assert not stale.exists()
        assert held.exists() and others.exists()
        SlotPool(slot_bytes=8, count=1, directory=tmp_path).close()  # its own start does the same
        assert others.exists()
    finally:
        lock.release()


def test_slots_of_killed_workers_come_back(tmp_path: Path) -> None:
    import random

    from tests.conftest import ids_of, write_id_dataset

    manifest = write_id_dataset(tmp_path, 60)
    shuffle = random.Random(4)
    with FeedSequence(
        manifest, batch_size=6, image_size=ID_SIZE, local_producers=2, seed=2, timeout=60
    ) as seq:
        supervisor = psutil.Process(seq.feed.local_producers_pid)
        kills = 0
        for epoch in range(30):
            if epoch % 4 == 1:  # a random worker, SIGKILLed mid-epoch
                workers = [w for w in supervisor.children() if w.is_running()]
                if workers:
                    shuffle.choice(workers).kill()
                    kills += 1
            rows = [row for index in range(len(seq)) for row in ids_of(seq[index][0])]
            assert sorted(rows) == list(range(60)), f"epoch {epoch}"
            seq.on_epoch_end()
            if epoch == 24:
                before = seq.stats
        after = seq.stats
    assert kills >= 6
    shared = after.batches_in_shared_memory - before.batches_in_shared_memory
    delivered = after.batches_delivered - before.batches_delivered
    assert shared >= 0.9 * delivered, f"{shared} of {delivered} batches in shared memory"


@pytest.mark.skipif(
    os.getuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare (private mount and PID namespaces)",
)
@pytest.mark.parametrize("signame", ["SIGKILL", "SIGTERM"])
def test_a_pid_1_trainer_restarted_ten_times_leaves_nothing(id_dataset: Path, signame: str) -> None:
    import json

    driver = Path(__file__).with_name("pid1_restarts.py")
    command = ["unshare", "--mount", "--propagation", "private", sys.executable, str(driver)]
    done = subprocess.run(
        [*command, str(id_dataset), signame],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.splitlines()[-1])
    start, runs = report["start"], report["runs"]
    assert all(run["pid"] == 1 for run in runs), "every trainer ran as PID 1"
    assert runs[-1]["after"] == start, "/dev/shm and TMPDIR are back to their first state"
    owned = [len(run["after"]) - len(start) for run in runs[:-1]]
    if signame == "SIGTERM":
        assert all(run["code"] in (143, -15) for run in runs[:-1])
        assert owned == [0] * 10, "a SIGTERM leaves nothing at all"
    else:
        # what one killed trainer leaves (slot file, its folder, its producer's folder), never more
        assert max(owned) <= 3, "each start removed what the killed one before it left"

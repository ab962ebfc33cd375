"""What a killed trainer leaves on the machine is removed by the next start, whatever the pids,
and a SIGTERM leaves nothing at all (issue 12). Real trainer processes, real /dev/shm."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import ID_SIZE
from zerofeed.consumer import FeedSequence
from zerofeed.consumer.leftovers import OwnerLock, remove_stale
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
    old = time.time() - 60  # past the grace for files being set up right now
    os.utime(slots, (old, old))
    os.utime(folder, (old, old))
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
    fresh = tmp_path / f"zerofeed-slots-{uid}-fresh"
    fresh.write_bytes(b"x")
    old = time.time() - 60
    for path in (stale, held):
        os.utime(path, (old, old))
    others = tmp_path / f"zerofeed-slots-{uid + 1}-theirs"
    others.write_bytes(b"x")
    os.utime(others, (old, old))
    if uid == 0:
        os.chown(others, 12345, 12345)
    try:
        assert remove_stale(tmp_path, f"zerofeed-slots-{uid}-*") == 1
        assert not stale.exists()
        assert held.exists() and fresh.exists() and others.exists()
        SlotPool(slot_bytes=8, count=1, directory=tmp_path).close()  # its own start does the same
        assert others.exists()
    finally:
        lock.release()

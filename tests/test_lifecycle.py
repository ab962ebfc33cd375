"""No process or socket is left behind: after close(), an exception, Ctrl-C, SIGTERM or SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from tests.conftest import ID_SIZE, descendants, wait_for_exit
from zerofeed.consumer import FeedSequence

pytestmark = pytest.mark.usefixtures("no_leftover_processes")

TRAINER = textwrap.dedent(
    """
    import signal, sys, time
    # Ctrl-C as in a terminal, even when the suite runs in a background job (which ignores SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from zerofeed.consumer import FeedSequence
    feed = FeedSequence(sys.argv[1], batch_size=10, image_size=(12, 10), local_producers=2)
    feed[0]
    print("serving", flush=True)
    while True:  # keep reading, as a training loop would
        for i in range(len(feed)):
            feed[i]
        feed.on_epoch_end()
    """
)


def start_trainer(manifest: Path) -> tuple[subprocess.Popen, list[psutil.Process]]:
    """A training process that has received its first batch; returns it and its descendants."""
    trainer = subprocess.Popen(
        [sys.executable, "-c", TRAINER, str(manifest)], stdout=subprocess.PIPE, text=True
    )
    assert trainer.stdout is not None
    assert trainer.stdout.readline().strip() == "serving"
    tree = psutil.Process(trainer.pid).children(recursive=True)
    assert len(tree) >= 3, "expected a producer supervisor and two workers"
    return trainer, tree


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_trainer_interrupted_or_killed_leaves_no_producer(id_dataset: Path, signum: int) -> None:
    trainer, tree = start_trainer(id_dataset)
    trainer.send_signal(signum)
    trainer.wait(timeout=60)
    trainer.stdout.close()
    assert not wait_for_exit(tree), "producers outlived their trainer"


def test_close_stops_everything_and_is_idempotent(id_dataset: Path) -> None:
    feed = FeedSequence(id_dataset, batch_size=10, image_size=ID_SIZE, local_producers=2)
    feed[0]
    private_dir = Path(feed.endpoint.removeprefix("ipc://")).parent
    assert private_dir.is_dir() and (private_dir.stat().st_mode & 0o777) == 0o700
    tree = descendants()
    assert tree
    feed.close()
    feed.close()
    assert not wait_for_exit(tree)
    assert not private_dir.exists()
    with pytest.raises(Exception, match="closed"):
        feed[1]


def test_exception_inside_with_block_stops_everything(id_dataset: Path) -> None:
    feed = FeedSequence(id_dataset, batch_size=10, image_size=ID_SIZE, local_producers=1)
    with pytest.raises(RuntimeError, match="boom"), feed:
        feed[0]
        tree = descendants()
        raise RuntimeError("boom")
    assert not wait_for_exit(tree)


def test_forgotten_feed_is_cleaned_up_at_interpreter_exit(id_dataset: Path) -> None:
    script = textwrap.dedent(
        f"""
        from zerofeed.consumer import FeedSequence
        feed = FeedSequence({str(id_dataset)!r}, batch_size=10, image_size=(12, 10),
                            local_producers=1)
        feed[0]
        print(feed.endpoint)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    folder = Path(result.stdout.strip().removeprefix("ipc://")).parent
    assert not folder.exists()


def test_local_producers_run_in_their_own_process_group_of_the_trainers_session(
    id_dataset: Path,
) -> None:
    """Their own process group: a terminal's Ctrl-C (SIGINT to the foreground group) reaches only
    the trainer, which stops them. The trainer's session: where the kernel shares CPU between
    sessions (autogroup), they compete for cores as the trainer's own threads do."""
    with FeedSequence(id_dataset, batch_size=10, image_size=ID_SIZE, local_producers=1) as feed:
        feed[0]
        for child in descendants():
            assert os.getpgid(child.pid) != os.getpgid(0)
            assert os.getsid(child.pid) == os.getsid(0)
            command = " ".join(child.cmdline())
            # A fresh interpreter each: the supervisor, and workers started by spawn, not fork.
            assert any(
                part in command
                for part in ("-m zerofeed.producer", "spawn_main", "resource_tracker")
            ), command

"""Shared fixtures: real image datasets on disk, and checks that no process is left behind."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from PIL import Image

from zerofeed.cli import main as zerofeed_main

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ID_SIZE = (12, 10)  # (height, width) of the id images


def id_color(row: int) -> tuple[int, int, int]:
    """The solid colour that identifies manifest row ``row`` (exact through PNG and resizing)."""
    return (row % 256, row // 256, 77)


def ids_of(images: np.ndarray) -> list[int]:
    """Manifest rows encoded in a batch of id images (see :func:`id_color`)."""
    centre = images[:, images.shape[1] // 2, images.shape[2] // 2, :].astype(int)
    return [int(r + 256 * g) for r, g, _ in centre]


def write_id_dataset(root: Path, count: int, *, classes: int = 3) -> Path:
    """``count`` solid-colour PNGs whose colour encodes their row; a CSV ``path,label``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "img").mkdir(exist_ok=True)
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for row in range(count):
            name = f"img/{row:05d}.png"
            image = np.empty((*ID_SIZE, 3), np.uint8)
            image[:] = id_color(row)
            Image.fromarray(image).save(root / name)
            writer.writerow([name, row % classes])
    return manifest


@pytest.fixture(scope="session")
def id_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 100-image id dataset (CSV manifest path), shared by the tests that only read it."""
    return write_id_dataset(tmp_path_factory.mktemp("ids"), 100)


def descendants() -> list[psutil.Process]:
    """Live (non-zombie) descendant processes of this test process."""
    alive = []
    for process in psutil.Process().children(recursive=True):
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``condition`` until it holds; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.05)  # polling a condition, not synchronising on time


def wait_for_exit(processes: list[psutil.Process], timeout: float = 20.0) -> list[psutil.Process]:
    """Wait until ``processes`` have exited; returns the ones still alive at the timeout."""
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    return [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.fixture
def no_leftover_processes() -> Iterator[None]:
    """Fails the test if it leaves any child process running."""
    before = {p.pid for p in descendants()}
    yield
    left = wait_for_exit([p for p in descendants() if p.pid not in before])
    for process in left:
        process.kill()
    assert not left, f"processes left running: {[p.cmdline() for p in left]}"


def start_producer(
    endpoint: str, data_root: Path, *options: str, capture_log: bool = False
) -> subprocess.Popen:
    """A `zerofeed producer` process (one worker unless ``options`` say otherwise); the caller
    stops it (SIGTERM). With ``capture_log`` its log is readable from ``stderr`` (text)."""
    command = [
        sys.executable,
        "-m",
        "zerofeed",
        "producer",
        "--connect",
        endpoint,
        "--data-root",
        str(data_root),
        "--workers",
        "1",
        *options,
    ]
    if capture_log:
        return subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    return subprocess.Popen(command, stderr=subprocess.DEVNULL)


def remote_feed(source: Path, *, bind: str = "tcp://127.0.0.1:0", **settings: Any) -> Any:
    """A FeedSequence of id images fed only by producers the test starts itself."""
    from zerofeed.consumer import FeedSequence

    defaults = {"image_size": ID_SIZE, "local_producers": 0, "timeout": 60}
    return FeedSequence(source, bind=bind, **(defaults | settings))


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """CURVE keys in folders ``trainer``, ``producers`` and ``strangers``: a trainer key pair, an authorized producer pair, and a stranger's pair."""
    folders = {name: tmp_path / name for name in ("trainer", "producers", "strangers")}
    for folder in folders.values():
        assert zerofeed_main(["keys", "generate", str(folder)]) == 0
    return folders


def curve_feed(manifest: Path, keys: dict[str, Path], **settings: object) -> Any:
    """A remote feed that requires CURVE: the trainer's keys, the ``producers`` folder authorised."""
    defaults = {"batch_size": 10, "seed": 3}
    return remote_feed(
        manifest,
        server_secret_key=keys["trainer"] / "zerofeed.key_secret",
        authorized_keys=keys["producers"],
        **(defaults | settings),
    )

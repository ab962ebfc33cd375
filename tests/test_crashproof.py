"""No input can crash a worker or stall the feed: any name the filesystem allows is served, and
any failure of one sample is that sample's bad-sample report (issue 12), with local and remote
producers alike."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ID_SIZE, id_color, ids_of, remote_feed, start_producer, wait_until
from zerofeed.consumer import BadSampleError, FeedSequence

pytestmark = pytest.mark.usefixtures("no_leftover_processes")

GOOD = 10


def write_hostile_source(root: Path) -> tuple[list[tuple[str, int]], dict[str, str]]:
    """(path, label) pairs: ``GOOD`` plain id images, one with a non-UTF-8 name (good too), one
    marked for the faulty plugin, and paths no file can have; the bad ones' expected kinds."""
    folder = root / "img"
    folder.mkdir(parents=True)
    pairs: list[tuple[str, int]] = []
    for row in range(GOOD + 1):
        image = np.empty((*ID_SIZE, 3), np.uint8)
        image[:] = id_color(row)
        name = f"{row:05d}.png" if row < GOOD else os.fsdecode(b"caf\xe9-\xff.png")
        Image.fromarray(image).save(os.fsencode(folder) + b"/" + os.fsencode(name), format="PNG")
        pairs.append((str(folder / name), row % 3))
    marked = np.zeros((*ID_SIZE, 3), np.uint8)
    marked[..., 2] = 199
    Image.fromarray(marked).save(folder / "marked.png")
    bad = {
        str(folder / "marked.png"): "transform",
        str(folder / "nul\0byte.png"): "unreadable",
        str(folder) + "/" + "/".join(["d" * 200] * 25) + ".png": "unreadable",
    }
    pairs += [(path, 0) for path in bad]
    return pairs, bad


@contextmanager
def hostile_feed(tmp_path: Path, where: str, on_error: str = "skip") -> Iterator[FeedSequence]:
    pairs, _ = write_hostile_source(tmp_path)
    settings = {
        "batch_size": 4,
        "image_size": ID_SIZE,
        "augment": {"custom": {"fail_on_marked": {}}},
        "plugins": ["tests.plugin_faulty"],
        "shuffle": False,
        "on_error": on_error,
        "timeout": 30,
    }
    if where == "local":
        with FeedSequence(pairs, local_producers=1, **settings) as seq:
            yield seq
        return
    endpoint = f"ipc://{tmp_path}/feed.sock"
    producer = start_producer(endpoint, tmp_path, "--plugin", "tests.plugin_faulty")
    try:
        with remote_feed(pairs, bind=endpoint, **settings) as seq:
            yield seq
        assert producer.poll() is None, "the producer is still up"
    finally:
        producer.send_signal(signal.SIGTERM)
        producer.wait(timeout=30)


@pytest.mark.parametrize("where", ["local", "remote"])
def test_hostile_paths_and_failing_plugins_are_bad_samples_and_the_epoch_ends(
    tmp_path: Path, where: str
) -> None:
    _, bad = write_hostile_source(tmp_path / "expected")
    with hostile_feed(tmp_path, where) as seq:
        for epoch in range(2):
            rows = [row for index in range(len(seq)) for row in ids_of(seq[index][0])]
            assert sorted(rows) == list(range(GOOD + 1)), f"epoch {epoch}: every good sample once"
            seq.on_epoch_end()
        skipped = seq.stats.skipped
    expected = {Path(p).name[:40]: kind for p, kind in bad.items()}
    assert {Path(s.path).name[:40]: s.kind for s in skipped} == expected
    transform = next(s for s in skipped if s.kind == "transform")
    assert "this image is marked as bad" in transform.reason
    assert len(transform.reason) < 4096, "a long reason is cut short, not refused whole"
    nul = next(s for s in skipped if "nul" in s.path)
    assert "NUL byte" in nul.reason


def test_a_sample_that_crashes_the_worker_process_is_skipped_from_then_on(tmp_path: Path) -> None:
    import psutil

    pairs, _ = write_hostile_source(tmp_path)
    pairs = [(path, label) for path, label in pairs if "nul" not in path and "ddd" not in path]
    with FeedSequence(
        pairs,
        batch_size=4,
        image_size=ID_SIZE,
        augment={"custom": {"crash_on_marked": {}}},
        plugins=["tests.plugin_crashing"],
        shuffle=False,
        on_error="skip",
        local_producers=2,
        timeout=60,
    ) as seq:
        for epoch in range(3):
            rows = [row for index in range(len(seq)) for row in ids_of(seq[index][0])]
            assert sorted(rows) == list(range(GOOD + 1)), f"epoch {epoch}: every good sample once"
            seq.on_epoch_end()
        crashes = [s for s in seq.stats.skipped if s.kind == "crash"]
        assert crashes and all(Path(s.path).name == "marked.png" for s in crashes)
        assert "SIGSEGV" in crashes[0].reason
        supervisor = psutil.Process(seq.feed.local_producers_pid)

        def workers() -> int:
            return sum("spawn_main" in " ".join(w.cmdline()) for w in supervisor.children())

        wait_until(lambda: workers() == 2, timeout=20)  # the producer serves on, whole


@pytest.mark.parametrize("where", ["local", "remote"])
def test_with_on_error_raise_each_bad_batch_names_its_sample_and_the_rest_is_served(
    tmp_path: Path, where: str
) -> None:
    _, bad = write_hostile_source(tmp_path / "expected")
    with hostile_feed(tmp_path, where, on_error="raise") as seq:
        rows: list[int] = []
        failed: dict[str, str] = {}
        for index in range(len(seq)):
            try:
                rows += ids_of(seq[index][0])
            except BadSampleError as error:
                failed[Path(error.path).name[:40]] = error.kind
    by_row = {GOOD + 1 + i: (Path(p).name[:40], kind) for i, (p, kind) in enumerate(bad.items())}
    total = GOOD + 1 + len(bad)
    batches = [range(start, min(start + 4, total)) for start in range(0, total, 4)]
    clean = [row for batch in batches if not set(batch) & set(by_row) for row in batch]
    firsts = [min(set(batch) & set(by_row)) for batch in batches if set(batch) & set(by_row)]
    assert failed == dict(by_row[row] for row in firsts), "each bad batch names its first"
    assert sorted(rows) == clean, "every batch without a bad sample, once"

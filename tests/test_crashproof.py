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

from tests.conftest import ID_SIZE, id_color, ids_of, remote_feed, start_producer
from zerofeed.consumer import FeedSequence

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
def hostile_feed(tmp_path: Path, where: str) -> Iterator[FeedSequence]:
    pairs, _ = write_hostile_source(tmp_path)
    settings = {
        "batch_size": 4,
        "image_size": ID_SIZE,
        "augment": {"custom": {"fail_on_marked": {}}},
        "plugins": ["tests.plugin_faulty"],
        "shuffle": False,
        "on_error": "skip",
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

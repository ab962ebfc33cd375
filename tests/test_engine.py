"""The feed engine and the Keras adapter's pass logic, through the MockTransport seam (no sockets,
no processes): what each call serves, checkpoints, and the locks under concurrent readers."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from zerofeed.common.errors import BadSampleError, ConfigError, ZerofeedError
from zerofeed.common.plan import EpochPlan
from zerofeed.common.protocol import Skipped, Task
from zerofeed.consumer import DataConfig, Feed, FeedSequence, Lifecycle, MockTransport

SIZE = (4, 4)
SAMPLES, BATCH, SEED = 20, 4, 9


def pairs(tmp_path: Path, count: int = SAMPLES) -> list[tuple[Path, int]]:
    return [(tmp_path / f"{i}.png", i % 3) for i in range(count)]  # never read: the mock makes


def encode_rows(task: Task) -> np.ndarray:
    """Images whose first pixel holds their manifest row, so a test can read what it got."""
    images = np.zeros((len(task.samples), *SIZE, 3), np.uint8)
    for i, (row, _path) in enumerate(task.samples):
        images[i, 0, 0, :2] = (row % 256, row // 256)
    return images


def rows_of(images: np.ndarray) -> list[int]:
    return [int(r) + 256 * int(g) for r, g in images[:, 0, 0, :2]]


def plan_rows(epoch: int, batch: int) -> list[int]:
    plan = EpochPlan(num_samples=SAMPLES, batch_size=BATCH, seed=SEED, epoch=epoch, shuffle=True)
    return plan.batch(batch).tolist()


def mock_feed(tmp_path: Path, **data: object) -> Feed:
    config = DataConfig(batch_size=BATCH, image_size=SIZE, seed=SEED, **data)  # type: ignore[arg-type]
    return Feed(pairs(tmp_path), data=config, transport=MockTransport(encode_rows))


def mock_sequence(tmp_path: Path) -> FeedSequence:
    return FeedSequence(
        pairs(tmp_path),
        batch_size=BATCH,
        image_size=SIZE,
        seed=SEED,
        transport=MockTransport(encode_rows),
    )


def test_get_returns_the_plans_batch_with_labels_and_metadata(tmp_path: Path) -> None:
    with mock_feed(tmp_path) as feed:
        assert feed.lifecycle is Lifecycle.RUNNING
        batch = feed.get(2, 3)
        assert (batch.epoch, batch.batch, batch.producer) == (2, 3, "mock")
        assert rows_of(batch.images) == plan_rows(2, 3) == batch.rows.tolist()
        assert batch.labels is not None
        assert batch.labels.tolist() == [r % 3 for r in plan_rows(2, 3)]
        assert batch.inputs[0] is batch.images
    assert feed.lifecycle is Lifecycle.CLOSED
    with pytest.raises(ZerofeedError, match="closed"):
        feed.get(2, 3)


def test_each_plan_batch_counts_once_however_often_it_is_asked_for(tmp_path: Path) -> None:
    with mock_feed(tmp_path) as feed:
        for _ in range(3):
            feed.get(0, 0)
        feed.get(0, 1)
        stats = feed.stats()
        assert (stats.batches_delivered, stats.images_delivered) == (2, 2 * BATCH)


def test_bad_samples_raise_or_are_listed(tmp_path: Path) -> None:
    def one_bad(task: Task) -> tuple[np.ndarray, list[Skipped]]:
        bad = task.samples[1][0]
        kept = Task(**{**task.__dict__, "samples": tuple(s for s in task.samples if s[0] != bad)})
        return encode_rows(kept), [Skipped(index=bad, kind="decode", reason="broken")]

    source = pairs(tmp_path)
    for on_error in ("raise", "skip"):
        config = DataConfig(batch_size=BATCH, image_size=SIZE, seed=SEED, on_error=on_error)
        with Feed(source, data=config, transport=MockTransport(one_bad)) as feed:
            if on_error == "raise":
                with pytest.raises(BadSampleError, match="decode: broken"):
                    feed.get(0, 0)
            else:
                batch = feed.get(0, 0)
                assert len(batch.rows) == BATCH - 1
                assert [s.kind for s in batch.skipped] == ["decode"]
                feed.get(0, 0)
                assert len(feed.stats().skipped) == 1, "listed once per epoch"


def test_state_is_json_and_restores_the_position(tmp_path: Path) -> None:
    with mock_feed(tmp_path) as feed:
        feed.get(1, 2)
        state = json.loads(json.dumps(feed.state()))
        assert (state["epoch"], state["batch"]) == (1, 3)
    with mock_feed(tmp_path) as again:
        assert again.restore(state) == (1, 3)
        assert rows_of(again.get(1, 3).images) == plan_rows(1, 3)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seed": SEED + 1}, f"seed: saved {SEED}, this feed {SEED + 1}"),
        ({"augment": {"horizontal_flip": True}}, "augment: saved"),
        ({"image_size": (5, 5)}, "image_size: saved [4, 4], this feed [5, 5]"),
    ],
)
def test_restoring_a_state_of_other_batches_says_what_differs(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    with mock_feed(tmp_path) as feed:
        state = feed.state()
    config = {"batch_size": BATCH, "image_size": SIZE, "seed": SEED, **change}
    handler = MockTransport(
        lambda t: np.zeros((len(t.samples), *config["image_size"], 3), np.uint8)
    )  # type: ignore[misc]
    with Feed(pairs(tmp_path), data=DataConfig(**config), transport=handler) as other:  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="cannot restore") as caught:
            other.restore(state)
        assert message in str(caught.value)
    with mock_feed(tmp_path) as feed, pytest.raises(ConfigError, match="not a zerofeed feed state"):
        feed.restore({"epoch": 1})


def epoch_rows(seq: FeedSequence, order: list[int]) -> list[list[int]]:
    return [rows_of(seq[i][0]) for i in order]


def test_keras_passes_serve_plan_order_and_probe_passes_do_not_count(tmp_path: Path) -> None:
    """The call patterns of Keras' fit: TensorFlow (signature probe before any pass) and JAX /
    torch (a one-batch shape-probe pass), each index order shuffled."""
    rng = np.random.default_rng(0)
    want = [[plan_rows(e, b) for b in range(5)] for e in range(3)]
    for backend in ("tensorflow", "jax"):
        with mock_sequence(tmp_path) as seq:
            if backend == "tensorflow":
                assert epoch_rows(seq, [0, 1]) == want[0][:2]  # signature probe
                seq.on_epoch_end()  # the iterator's reset: no pass ended
            else:
                seq.on_epoch_begin()
                epoch_rows(seq, [3])  # shape probe: one batch
                seq.on_epoch_end()  # reset ends the probe pass: incomplete, no epoch ends
            for epoch in range(3):
                seq.on_epoch_begin()
                assert epoch_rows(seq, rng.permutation(5).tolist()) == want[epoch], backend
                seq.on_epoch_end()
                seq.on_epoch_end()  # evaluate's reset: changes nothing
            assert seq.epoch == 3
            assert seq.stats.batches_delivered == 15


def test_manual_loops_and_seek(tmp_path: Path) -> None:
    with mock_sequence(tmp_path) as seq:
        assert epoch_rows(seq, [0, 1, 1]) == [plan_rows(0, 0), plan_rows(0, 1), plan_rows(0, 1)]
        seq.on_epoch_end()
        assert seq.epoch == 1
        assert epoch_rows(seq, [0]) == [plan_rows(1, 0)]
        seq.seek(4, 2)
        assert seq.position == (4, 2)
        assert epoch_rows(seq, [0, 1, 2]) == [plan_rows(4, b) for b in (2, 3, 4)]
        with pytest.raises(IndexError, match="resumed at batch 2"):
            seq[3]
        assert seq.position == (5, 0)


def test_stats_status_and_epoch_moves_from_many_threads_never_deadlock(tmp_path: Path) -> None:
    """Readers of stats/status hammer the locks while a trainer crosses 2,000 epoch boundaries."""
    with mock_sequence(tmp_path) as seq:
        stop = threading.Event()
        errors: list[BaseException] = []

        def read() -> None:
            try:
                while not stop.is_set():
                    assert seq.stats.epoch >= 0
                    assert seq.feed.status()["batches_per_epoch"] == 5
            except BaseException as exc:
                errors.append(exc)

        def train() -> None:
            try:
                for _ in range(2000):
                    seq.on_epoch_begin()
                    for index in range(len(seq)):
                        seq[index]
                    seq.on_epoch_end()
            except BaseException as exc:
                errors.append(exc)

        readers = [threading.Thread(target=read, daemon=True) for _ in range(3)]
        trainer = threading.Thread(target=train, daemon=True)
        for thread in [*readers, trainer]:
            thread.start()
        trainer.join(timeout=120)
        stop.set()
        for reader in readers:
            reader.join(timeout=10)
        assert not trainer.is_alive(), "the training thread hung"
        assert not errors, errors
        assert seq.epoch == 2000

"""FeedSequence end to end with real producer processes, sockets and image files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ID_SIZE, ids_of, wait_until, write_id_dataset
from zerofeed.common.errors import BadSampleError, ConfigError
from zerofeed.consumer import FeedSequence

pytestmark = pytest.mark.usefixtures("no_leftover_processes")


def epoch_ids(seq: FeedSequence, order: list[int] | None = None) -> list[list[int]]:
    """The manifest rows of every batch of the current epoch, asked for in ``order``."""
    return [ids_of(seq[i][0]) for i in (order or range(len(seq)))]


def test_every_sample_exactly_once_per_epoch_with_three_producers(tmp_path: Path) -> None:
    manifest = write_id_dataset(tmp_path, 203)
    with FeedSequence(
        manifest, batch_size=16, image_size=ID_SIZE, seed=3, local_producers=3, max_queue_size=4
    ) as seq:
        orders = []
        for _ in range(3):
            rows = [row for batch in epoch_ids(seq) for row in batch]
            assert Counter(rows) == Counter(range(203)), "a sample was lost or duplicated"
            orders.append(rows)
            seq.on_epoch_end()
        assert orders[0] != orders[1] != orders[2], "shuffle must change between epochs"
        # Tiny images: one producer may finish all three epochs before the others connect.
        wait_until(lambda: seq.stats.producers_connected == 3)


def test_batches_are_identical_with_one_or_three_producers(tmp_path: Path) -> None:
    """Same seed => byte-identical batches, whoever made them (augmentation included)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    pairs = []
    for i in range(40):
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
        pairs.append((path, i % 2))
    augment = {
        "random_resized_crop": True,
        "horizontal_flip": True,
        "rotate": 10,
        "brightness": 0.2,
        "contrast": 0.2,
        "saturation": 0.2,
    }
    runs = []
    for producers in (1, 3):
        with FeedSequence(
            pairs,
            batch_size=8,
            image_size=(24, 24),
            augment=augment,
            seed=11,
            local_producers=producers,
        ) as seq:
            epochs = []
            for _ in range(2):
                epochs.append([seq[i] for i in range(len(seq))])
                seq.on_epoch_end()
            runs.append(epochs)
    for epoch_a, epoch_b in zip(*runs, strict=True):
        for (xa, ya), (xb, yb) in zip(epoch_a, epoch_b, strict=True):
            assert xa.tobytes() == xb.tobytes()
            np.testing.assert_array_equal(ya, yb)
    assert runs[0][0][0][0].tobytes() != runs[0][1][0][0].tobytes(), "epochs must differ"


def test_same_index_twice_gives_the_same_batch(id_dataset: Path) -> None:
    with FeedSequence(
        id_dataset, batch_size=10, image_size=ID_SIZE, seed=1, local_producers=1, max_queue_size=2
    ) as seq:
        first = [ids_of(seq[i][0]) for i in (0, 1)]  # as Keras' TensorFlow backend peeks
        again = [ids_of(seq[i][0]) for i in range(len(seq))]
        assert again[:2] == first
        assert sorted(r for b in again for r in b) == list(range(100))
        # Far behind the queue: re-made on demand, still the same rows.
        assert ids_of(seq[0][0]) == first[0]


def test_random_order_access_still_serves_the_plan_exactly_once(id_dataset: Path) -> None:
    """fit(shuffle=True) asks for indices in random order; the stream stays the plan's."""
    with FeedSequence(
        id_dataset, batch_size=10, image_size=ID_SIZE, seed=5, local_producers=2
    ) as seq:
        in_order = epoch_ids(seq)
        seq.on_epoch_end()
        seq.on_epoch_end()  # epoch 2 in order, for reference below
        reference = epoch_ids(seq)
    with FeedSequence(
        id_dataset, batch_size=10, image_size=ID_SIZE, seed=5, local_producers=2
    ) as seq:
        shuffled_order = list(np.random.default_rng(0).permutation(len(seq)))
        assert sorted(r for b in epoch_ids(seq, shuffled_order) for r in b) == list(range(100))
        seq.on_epoch_end()
        seq.on_epoch_end()
        assert epoch_ids(seq) == reference
    assert in_order != reference


def test_unshuffled_feed_follows_the_manifest(id_dataset: Path) -> None:
    with FeedSequence(
        id_dataset, batch_size=30, image_size=ID_SIZE, shuffle=False, local_producers=1
    ) as seq:
        assert len(seq) == 4
        batches = epoch_ids(seq)
        assert batches[0] == list(range(30))
        assert batches[-1] == list(range(90, 100))
        x, y = seq[3]
        assert x.shape == (10, *ID_SIZE, 3) and x.dtype == np.uint8
        np.testing.assert_array_equal(y, np.arange(90, 100) % 3)


def test_float32_and_categorical(id_dataset: Path) -> None:
    with FeedSequence(
        id_dataset,
        batch_size=8,
        image_size=ID_SIZE,
        dtype="float32",
        label_mode="categorical",
        shuffle=False,
        local_producers=1,
    ) as seq:
        x, y = seq[0]
        assert x.dtype == np.float32 and x.min() >= 0.0 and x.max() <= 1.0
        np.testing.assert_allclose(x[:, 5, 5, 0] * 255, np.arange(8), atol=1e-3)
        assert y.dtype == np.float32 and y.shape == (8, 3)
        np.testing.assert_array_equal(y.argmax(axis=1), np.arange(8) % 3)


def test_in_flight_work_is_bounded(tmp_path: Path) -> None:
    manifest = write_id_dataset(tmp_path, 120)
    with FeedSequence(
        manifest, batch_size=4, image_size=ID_SIZE, seed=0, local_producers=3, max_queue_size=3
    ) as seq:
        for i in range(len(seq)):
            seq[i]
        stats = seq.stats
    # One batch may be asked for out of turn, on top of the queue.
    assert 1 <= stats.peak_outstanding <= 3 + 1
    assert stats.tasks_issued <= len(seq) + 2 * 3 + 1


def test_bad_sample_raises_with_its_path(tmp_path: Path) -> None:
    manifest = write_id_dataset(tmp_path, 20)
    (tmp_path / "img" / "00007.png").write_bytes(b"not an image at all")
    (tmp_path / "img" / "00011.png").unlink()
    with FeedSequence(
        manifest, batch_size=5, image_size=ID_SIZE, shuffle=False, local_producers=1
    ) as seq:
        assert len(ids_of(seq[0][0])) == 5
        with pytest.raises(BadSampleError, match=r"img/00007\.png.*decode"):
            seq[1]
        with pytest.raises(BadSampleError, match=r"img/00011\.png.*missing"):
            seq[2]
        assert ids_of(seq[3][0]) == list(range(15, 20)), "the feed keeps serving after an error"


def test_skip_mode_drops_and_lists_bad_samples(tmp_path: Path) -> None:
    manifest = write_id_dataset(tmp_path, 20)
    (tmp_path / "img" / "00007.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "img" / "00011.png").unlink()
    with FeedSequence(
        manifest,
        batch_size=5,
        image_size=ID_SIZE,
        shuffle=False,
        local_producers=2,
        on_error="skip",
    ) as seq:
        for _ in range(2):
            batches = [seq[i] for i in range(len(seq))]
            seq.on_epoch_end()
        rows = [r for x, _ in batches for r in ids_of(x)]
        assert rows == [r for r in range(20) if r not in (7, 11)]
        _, y = batches[1]
        np.testing.assert_array_equal(y, np.array([5, 6, 8, 9]) % 3)
        skipped = seq.stats.skipped
    assert sorted((s.path, s.kind, s.epoch) for s in skipped) == [
        ("img/00007.png", "decode", 0),
        ("img/00007.png", "decode", 1),
        ("img/00011.png", "missing", 0),
        ("img/00011.png", "missing", 1),
    ]


def test_stats_report_delivery_and_waiting(id_dataset: Path) -> None:
    with FeedSequence(id_dataset, batch_size=25, image_size=ID_SIZE, local_producers=1) as seq:
        for i in range(len(seq)):
            seq[i]
        stats = seq.stats
    assert (stats.batches_delivered, stats.images_delivered) == (4, 100)
    assert stats.wait_seconds > 0  # the first batch had to be made
    assert stats.producers_connected == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"image_size": (0, 5)}, "image_size"),
        ({"dtype": "float16"}, "dtype"),
        ({"on_error": "ignore"}, "on_error"),
        ({"local_producers": -1}, "local_producers"),
        ({"augment": {"flip": True}}, "Unknown augment key"),
        ({"label_mode": "binary"}, "label_mode"),
        ({"bind": "localhost:5555"}, "tcp://HOST:PORT"),
        ({"seed": -1}, "seed"),
    ],
)
def test_invalid_settings_fail_before_anything_starts(
    id_dataset: Path, kwargs: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        FeedSequence(id_dataset, **kwargs)

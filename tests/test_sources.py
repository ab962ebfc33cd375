"""Every source and label format, end to end through FeedSequence and real producers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ID_SIZE, id_color, ids_of, write_id_dataset
from zerofeed.consumer import FeedSequence

pytestmark = pytest.mark.usefixtures("no_leftover_processes")


def write_id_image(path: Path, row: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.empty((*ID_SIZE, 3), np.uint8)
    image[:] = id_color(row)
    Image.fromarray(image).save(path)


def test_directory_of_class_folders(tmp_path: Path) -> None:
    # Rows follow the sorted class folders, then sorted file names (as Keras does).
    for row, (cls, name) in enumerate([("cat", "a.png"), ("cat", "b.png"), ("dog", "a.png")]):
        write_id_image(tmp_path / cls / name, row)
    with FeedSequence(
        tmp_path,
        batch_size=3,
        image_size=ID_SIZE,
        shuffle=False,
        local_producers=1,
        label_mode="categorical",
    ) as seq:
        x, y = seq[0]
        assert seq.class_names == ("cat", "dog")
    assert ids_of(x) == [0, 1, 2]
    np.testing.assert_array_equal(y, [[1, 0], [1, 0], [0, 1]])


def test_csv_with_one_hot_vector_labels_and_no_header(tmp_path: Path) -> None:
    lines = []
    for row in range(4):
        write_id_image(tmp_path / "i" / f"{row}.png", row)
        onehot = [0] * 4
        onehot[row] = 1
        lines.append(",".join([f"i/{row}.png", *map(str, onehot)]))
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    with FeedSequence(
        tmp_path / "m.csv", batch_size=4, image_size=ID_SIZE, shuffle=False, local_producers=1
    ) as seq:
        x, y = seq[0]
    assert ids_of(x) == [0, 1, 2, 3]
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, np.eye(4))


def test_csv_with_class_names_and_unlabeled_csv(tmp_path: Path) -> None:
    for row in range(3):
        write_id_image(tmp_path / f"{row}.png", row)
    (tmp_path / "named.csv").write_text("file,species\n0.png,zebra\n1.png,ant\n2.png,zebra\n")
    (tmp_path / "bare.csv").write_text("path\n0.png\n1.png\n2.png\n")
    with FeedSequence(
        tmp_path / "named.csv", batch_size=3, image_size=ID_SIZE, shuffle=False, local_producers=1
    ) as seq:
        _, y = seq[0]
        assert seq.class_names == ("ant", "zebra")
        np.testing.assert_array_equal(y, [1, 0, 1])
    with FeedSequence(
        tmp_path / "bare.csv", batch_size=3, image_size=ID_SIZE, shuffle=False, local_producers=1
    ) as seq:
        batch = seq[0]
    assert len(batch) == 1 and ids_of(batch[0]) == [0, 1, 2]


def absolute_one_hot_csv(csv_path: Path, images: Path, rows: int) -> Path:
    """The seed's own manifest: headerless `path,0,1,0` rows with absolute paths."""
    lines = []
    for row in range(rows):
        write_id_image(images / f"{row}.png", row)
        onehot = ["0"] * rows
        onehot[row] = "1"
        lines.append(",".join([str((images / f"{row}.png").resolve()), *onehot]))
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    csv_path.write_text("\n".join(lines) + "\n")
    return csv_path


def test_csv_with_absolute_paths_next_to_it(tmp_path: Path) -> None:
    csv_path = absolute_one_hot_csv(tmp_path / "m.csv", tmp_path / "i", 3)
    with FeedSequence(
        csv_path, batch_size=3, image_size=ID_SIZE, shuffle=False, local_producers=1, timeout=60
    ) as seq:
        x, y = seq[0]
    assert ids_of(x) == [0, 1, 2]
    np.testing.assert_array_equal(y, np.eye(3))


def test_csv_with_absolute_paths_outside_its_folder(tmp_path: Path) -> None:
    csv_path = absolute_one_hot_csv(tmp_path / "lists" / "m.csv", tmp_path / "images", 3)
    with FeedSequence(
        csv_path, batch_size=3, image_size=ID_SIZE, shuffle=False, local_producers=1, timeout=60
    ) as seq:
        x, y = seq[0]
    assert ids_of(x) == [0, 1, 2]
    np.testing.assert_array_equal(y, np.eye(3))


def test_csv_rows_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for row in range(2):
        write_id_image(tmp_path / "data" / f"{row}.png", row)
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "m.csv").write_text("data/0.png,1\n./data//1.png,0\n")
    monkeypatch.chdir(tmp_path)
    with FeedSequence(
        Path("lists/m.csv"),
        root=".",
        batch_size=2,
        image_size=ID_SIZE,
        shuffle=False,
        local_producers=1,
        timeout=60,
    ) as seq:
        x, y = seq[0]
    assert ids_of(x) == [0, 1]
    np.testing.assert_array_equal(y, [1, 0])


def test_pairs_with_absolute_and_relative_paths(tmp_path: Path, monkeypatch) -> None:
    for row in range(2):
        write_id_image(tmp_path / f"{row}.png", row)
    monkeypatch.chdir(tmp_path)
    pairs = [("0.png", "b"), (tmp_path / "1.png", "a")]
    with FeedSequence(
        pairs, batch_size=2, image_size=ID_SIZE, shuffle=False, local_producers=1
    ) as seq:
        x, y = seq[0]
    assert ids_of(x) == [0, 1]
    np.testing.assert_array_equal(y, [1, 0])


def test_custom_transform_from_a_plugin_module(tmp_path: Path) -> None:
    manifest = write_id_dataset(tmp_path, 6)
    augment = {"custom": {"invert": {}}}
    with FeedSequence(
        manifest,
        batch_size=6,
        image_size=ID_SIZE,
        shuffle=False,
        augment=augment,
        plugins=["tests.plugin_example"],
        local_producers=1,
    ) as seq:
        x, _ = seq[0]
    np.testing.assert_array_equal(x[:, 0, 0, 0], 255 - np.arange(6))


def test_custom_transform_no_local_producer_has_is_a_config_error_at_once(tmp_path: Path) -> None:
    from zerofeed.common.errors import ConfigError

    manifest = write_id_dataset(tmp_path, 6)
    for plugins in ((), ("tests.plugin_slow",)):
        with pytest.raises(ConfigError, match=r"custom transform\(s\) \['invert'\]"):
            FeedSequence(
                manifest,
                batch_size=6,
                image_size=ID_SIZE,
                augment={"custom": {"invert": {}}},
                plugins=plugins,
                local_producers=1,
            )


def test_remote_producer_without_the_plugin_gets_no_work_and_the_wait_says_why(
    tmp_path: Path,
) -> None:
    from tests.conftest import remote_feed, start_producer, wait_until
    from zerofeed.common.errors import FeedTimeoutError

    manifest = write_id_dataset(tmp_path, 6)
    with remote_feed(manifest, batch_size=6, augment={"custom": {"invert": {}}}, timeout=3) as seq:
        producer = start_producer(seq.endpoint, tmp_path)
        try:
            wait_until(lambda: seq.stats.producers_connected == 1)
            with pytest.raises(
                FeedTimeoutError, match=r"none can make it: they lack custom transform\(s\)"
            ):
                seq[0]
            assert seq.stats.tasks_issued == 0
        finally:
            producer.terminate()
            producer.wait(timeout=20)

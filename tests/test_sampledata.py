"""Tests for zerofeed.sampledata: layout, balance, determinism, idempotence, separability."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zerofeed.common.errors import ConfigError
from zerofeed.common.manifest import load_manifest
from zerofeed.sampledata import MARKER_NAME, SampleDataset, main, make_sample_dataset


def make_small(root: Path, *, seed: int = 0, per_class: int = 8) -> SampleDataset:
    return make_sample_dataset(root, classes=3, per_class=per_class, image_size=(40, 56), seed=seed)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_layout_counts_and_balance(tmp_path: Path) -> None:
    ds = make_small(tmp_path)
    assert ds.class_names == ("class_00", "class_01", "class_02")
    assert ds.num_images == 24
    images = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.jpg"))
    assert len(images) == 24
    assert "class_01/7.jpg" in images
    train, val = load_manifest(ds.train_csv), load_manifest(ds.val_csv)
    assert len(train) + len(val) == 24
    assert set(train.paths).isdisjoint(val.paths)
    assert sorted(train.paths + val.paths) == images
    for m, expected in ((train, 6), (val, 2)):
        assert m.class_names == ds.class_names
        assert m.root == tmp_path.resolve()
        assert m.labels is not None
        assert collections.Counter(m.labels.tolist()) == {0: expected, 1: expected, 2: expected}
        for path, label in zip(m.paths, m.labels.tolist(), strict=True):
            assert path.startswith(ds.class_names[label] + "/")


def test_csv_header(tmp_path: Path) -> None:
    ds = make_small(tmp_path)
    assert ds.train_csv.read_text().splitlines()[0] == "path,label"
    assert ds.val_csv.read_text().splitlines()[0] == "path,label"


def test_images_decode_at_requested_size(tmp_path: Path) -> None:
    ds = make_small(tmp_path)
    for path in load_manifest(ds.val_csv).paths:
        with Image.open(tmp_path / path) as image:
            assert image.format == "JPEG"
            assert image.mode == "RGB"
            assert image.size == (56, 40)  # PIL gives (width, height)


def test_png_format(tmp_path: Path) -> None:
    make_sample_dataset(tmp_path, classes=2, per_class=2, image_size=(16, 16), fmt="png")
    pngs = list(tmp_path.rglob("*.png"))
    assert len(pngs) == 4
    with Image.open(pngs[0]) as image:
        assert image.format == "PNG"


def test_deterministic_across_folders(tmp_path: Path) -> None:
    make_small(tmp_path / "a", seed=5)
    make_small(tmp_path / "b", seed=5)
    a, b = tree_bytes(tmp_path / "a"), tree_bytes(tmp_path / "b")
    assert len(a) == 24 + 3
    assert a == b


def test_seed_changes_images_and_split(tmp_path: Path) -> None:
    make_small(tmp_path / "a", seed=1)
    make_small(tmp_path / "b", seed=2)
    a, b = tree_bytes(tmp_path / "a"), tree_bytes(tmp_path / "b")
    assert a["class_00/0.jpg"] != b["class_00/0.jpg"]
    assert a["train.csv"] != b["train.csv"]


def test_idempotent(tmp_path: Path) -> None:
    first = make_small(tmp_path)
    image = tmp_path / "class_00" / "0.jpg"
    image.write_bytes(b"sentinel")  # a rewrite would restore the JPEG
    second = make_small(tmp_path)
    assert second == first
    assert image.read_bytes() == b"sentinel"


def test_other_arguments_in_same_folder_refused(tmp_path: Path) -> None:
    make_small(tmp_path)
    with pytest.raises(ConfigError, match=f"other arguments.*{MARKER_NAME}"):
        make_small(tmp_path, per_class=9)


def test_marker_missing_means_rebuild(tmp_path: Path) -> None:
    make_small(tmp_path)
    (tmp_path / MARKER_NAME).unlink()
    image = tmp_path / "class_00" / "0.jpg"
    image.write_bytes(b"partial")
    make_small(tmp_path)
    assert image.read_bytes()[:2] == b"\xff\xd8"  # a JPEG again
    assert (tmp_path / MARKER_NAME).is_file()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"classes": 0},
        {"per_class": 1},
        {"image_size": (4, 96)},
        {"val_fraction": 0.0},
        {"val_fraction": 1.0},
        {"fmt": "GIF"},
        {"seed": -1},
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        make_sample_dataset(tmp_path, **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / MARKER_NAME).exists()


def test_classes_separable_by_colour(tmp_path: Path) -> None:
    """A nearest-centroid classifier on the hue of saturated pixels tells the classes apart."""
    ds = make_sample_dataset(tmp_path, classes=6, per_class=12, image_size=(48, 48))

    def features(path: Path) -> np.ndarray:
        with Image.open(path) as image:
            hsv = np.asarray(image.convert("HSV"), dtype=np.float32)
        hue, sat = hsv[..., 0] / 255 * 2 * np.pi, hsv[..., 1]
        keep = sat > 150
        return np.array([np.cos(hue[keep]).mean(), np.sin(hue[keep]).mean()])

    train, val = load_manifest(ds.train_csv), load_manifest(ds.val_csv)
    assert train.labels is not None and val.labels is not None
    xt = np.stack([features(tmp_path / p) for p in train.paths])
    xv = np.stack([features(tmp_path / p) for p in val.paths])
    centroids = np.stack([xt[train.labels == k].mean(axis=0) for k in range(6)])
    predicted = np.argmin(((xv[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (predicted == val.labels).mean() == 1.0


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    code = main([str(out), "--classes", "2", "--per-class", "4", "--size", "20", "30"])
    assert code == 0
    assert "8 images in 2 classes" in capsys.readouterr().out
    with Image.open(out / "class_01" / "3.jpg") as image:
        assert image.size == (30, 20)
    assert len(load_manifest(out / "train.csv")) + len(load_manifest(out / "val.csv")) == 8


def test_cli_reports_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path), "--classes", "0"]) == 2
    assert "classes must be an integer >= 1" in capsys.readouterr().err

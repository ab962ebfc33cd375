"""Tests for zerofeed.common.manifest: every source form, batch labels and every error case."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from zerofeed.common.errors import ConfigError, ManifestError
from zerofeed.common.manifest import (
    IMAGE_EXTENSIONS,
    Manifest,
    load_manifest,
    validate_label_mode,
)


def write_csv(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


# --------------------------------------------------------------------------- CSV forms


def test_csv_int_labels_with_header(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path, "path,label\na.jpg,2\nsub/b.png,0\nc.jpg,5\n")
    m = load_manifest(csv_path)
    assert m.root == tmp_path.resolve()
    assert m.paths == ("a.jpg", "sub/b.png", "c.jpg")
    assert m.label_kind == "class"
    assert m.labels is not None and m.labels.dtype == np.int64
    assert m.labels.tolist() == [2, 0, 5]
    assert m.class_names is None
    assert m.num_classes == 6
    assert len(m) == 3


def test_csv_int_labels_without_header(tmp_path: Path) -> None:
    m = load_manifest(write_csv(tmp_path, "a.jpg,1\nb.jpg,0\n"))
    assert m.paths == ("a.jpg", "b.jpg")
    assert m.labels is not None and m.labels.tolist() == [1, 0]


def test_csv_header_detected_by_numeric_second_row(tmp_path: Path) -> None:
    m = load_manifest(write_csv(tmp_path, "image.jpg,label\na.jpg,3\n"))
    assert m.paths == ("a.jpg",)
    assert m.labels is not None and m.labels.tolist() == [3]


def test_csv_class_names_sorted(tmp_path: Path) -> None:
    text = "filename,label\nx/1.jpg,zebra\nx/2.jpg,ant\nx/3.jpg,mole\nx/4.jpg,ant\n"
    m = load_manifest(write_csv(tmp_path, text))
    assert m.class_names == ("ant", "mole", "zebra")
    assert m.labels is not None and m.labels.tolist() == [2, 0, 1, 0]
    assert m.num_classes == 3
    assert m.label_kind == "class"


def test_csv_class_names_without_header_keeps_first_row(tmp_path: Path) -> None:
    m = load_manifest(write_csv(tmp_path, "a.jpg,cat\nb.jpg,dog\n"))
    assert m.paths == ("a.jpg", "b.jpg")
    assert m.class_names == ("cat", "dog")


def test_csv_one_hot_vector(tmp_path: Path) -> None:
    m = load_manifest(write_csv(tmp_path, "a.jpg,0,1,0,0,0\nb.jpg,0,0,0,0,1\n"))
    assert m.label_kind == "vector"
    assert m.labels is not None and m.labels.dtype == np.float32
    assert m.labels.shape == (2, 5)
    assert m.labels.argmax(axis=1).tolist() == [1, 4]
    assert m.num_classes is None
    assert m.class_names is None


def test_csv_vector_with_header(tmp_path: Path) -> None:
    m = load_manifest(write_csv(tmp_path, "path,x,y\na.jpg,0.5,-1e-2\n"))
    assert m.labels is not None
    np.testing.assert_allclose(m.labels, [[0.5, -0.01]])


def test_csv_single_float_column_is_vector(tmp_path: Path) -> None:
    m = load_manifest(write_csv(tmp_path, "path,score\na.jpg,0.25\nb.jpg,1\n"))
    assert m.label_kind == "vector"
    assert m.labels is not None and m.labels.shape == (2, 1)


def test_csv_unlabeled(tmp_path: Path) -> None:
    m = load_manifest(write_csv(tmp_path, "path\na.jpg\nb.jpg\n"))
    assert m.label_kind == "none"
    assert m.labels is None
    assert m.num_classes is None
    assert m.paths == ("a.jpg", "b.jpg")


def test_csv_unlabeled_without_header(tmp_path: Path) -> None:
    m = load_manifest(write_csv(tmp_path, "a.jpg\nb.jpg\n"))
    assert m.paths == ("a.jpg", "b.jpg")


def test_csv_blank_lines_whitespace_and_dot_segments(tmp_path: Path) -> None:
    text = "\n path , label \n\n ./a.jpg , 1 \n   \nsub//b.jpg,2\n\n"
    m = load_manifest(write_csv(tmp_path, text))
    assert m.paths == ("a.jpg", "sub/b.jpg")
    assert m.labels is not None and m.labels.tolist() == [1, 2]


def test_csv_with_bom_and_any_suffix(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_bytes("\ufeffpath,label\na.jpg,0\n".encode())
    m = load_manifest(path)
    assert m.paths == ("a.jpg",)


def test_csv_accepts_str_source(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path, "a.jpg,0\n")
    assert load_manifest(str(csv_path)).paths == ("a.jpg",)


def test_labels_are_read_only(tmp_path: Path) -> None:
    m = load_manifest(write_csv(tmp_path, "a.jpg,0\n"))
    assert m.labels is not None
    with pytest.raises(ValueError):
        m.labels[0] = 3


def test_manifest_passes_through(tmp_path: Path) -> None:
    m = load_manifest(write_csv(tmp_path, "a.jpg,0\n"))
    assert load_manifest(m) is m


# --------------------------------------------------------------------------- CSV errors


def test_csv_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"data\.csv.*no samples"):
        load_manifest(write_csv(tmp_path, "\n\n"))


def test_csv_header_only(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"data\.csv.*no samples"):
        load_manifest(write_csv(tmp_path, "path,label\n"))


def test_csv_inconsistent_columns(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"data\.csv, line 4: 3 columns, but line 1 has 2"):
        load_manifest(write_csv(tmp_path, "path,label\na.jpg,1\n\nb.jpg,1,2\n"))


def test_csv_mixed_labels_names_line(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest(write_csv(tmp_path, "path,label\na.jpg,1\nb.jpg,2\nc.jpg,cat\n"))
    message = str(info.value)
    assert "data.csv, line 4" in message
    assert "'cat' is not a number" in message
    assert "line 2" in message


def test_csv_mixed_labels_number_after_names(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"line 3: label '7' is a number"):
        load_manifest(write_csv(tmp_path, "path,label\na.jpg,cat\nb.jpg,7\n"))


def test_csv_negative_int_label(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"data\.csv, line 3: class index -1 is negative"):
        load_manifest(write_csv(tmp_path, "path,label\na.jpg,0\nb.jpg,-1\n"))


def test_csv_non_numeric_vector_value(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest(write_csv(tmp_path, "a.jpg,0,1,0\nb.jpg,0,x,1\n"))
    message = str(info.value)
    assert "data.csv, line 2" in message
    assert "column 3" in message and "'x'" in message


@pytest.mark.parametrize("bad", ["/abs/a.jpg", "../a.jpg", "sub/../../a.jpg", "C:\\img\\a.jpg"])
def test_csv_rejects_paths_outside_its_folder(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest(write_csv(tmp_path, f"path,label\nok.jpg,0\n{bad},1\n"))
    message = str(info.value)
    assert "data.csv, line 3" in message
    assert "relative to the CSV's folder" in message


def test_csv_empty_path_cell(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"line 2: the path cell is empty"):
        load_manifest(write_csv(tmp_path, "path,label\n,0\n"))


def test_csv_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bin.csv"
    path.write_bytes(b"a.jpg,\xff\xfe\n")
    with pytest.raises(ManifestError, match=r"bin\.csv: cannot read"):
        load_manifest(path)


def test_missing_source_lists_accepted_forms(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path / "nope.csv")
    message = str(info.value)
    assert "nope.csv" in message and "does not exist" in message
    assert "CSV file" in message and "directory" in message and "pairs" in message


def test_unsupported_source_type() -> None:
    with pytest.raises(ManifestError, match="Cannot read a manifest from a int"):
        load_manifest(3)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- directories


def test_directory_source(tmp_path: Path) -> None:
    touch(tmp_path / "dogs" / "b.jpg")
    touch(tmp_path / "dogs" / "a.PNG")
    touch(tmp_path / "dogs" / "deep" / "nested" / "c.webp")
    touch(tmp_path / "dogs" / "notes.txt")
    touch(tmp_path / "cats" / "z.jpeg")
    touch(tmp_path / "cats" / "Thumbs.db")
    touch(tmp_path / "top_level.jpg")
    (tmp_path / "empty_class").mkdir()
    m = load_manifest(tmp_path)
    assert m.root == tmp_path.resolve()
    assert m.class_names == ("cats", "dogs", "empty_class")
    assert m.paths == ("cats/z.jpeg", "dogs/a.PNG", "dogs/b.jpg", "dogs/deep/nested/c.webp")
    assert m.labels is not None and m.labels.tolist() == [0, 1, 1, 1]
    assert m.num_classes == 3


def test_directory_every_extension(tmp_path: Path) -> None:
    for i, ext in enumerate(sorted(IMAGE_EXTENSIONS)):
        touch(tmp_path / "c" / f"{i}{ext.upper() if i % 2 else ext}")
    assert len(load_manifest(tmp_path)) == len(IMAGE_EXTENSIONS)


def test_directory_without_class_folders(tmp_path: Path) -> None:
    touch(tmp_path / "a.jpg")
    with pytest.raises(ManifestError, match=r"no subfolders.*one subfolder of images per class"):
        load_manifest(tmp_path)


def test_directory_without_images(tmp_path: Path) -> None:
    touch(tmp_path / "cats" / "readme.txt")
    with pytest.raises(ManifestError, match="No images found"):
        load_manifest(tmp_path)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_directory_symlink_loop_terminates(tmp_path: Path) -> None:
    touch(tmp_path / "c" / "a.jpg")
    os.symlink(tmp_path / "c", tmp_path / "c" / "loop")
    m = load_manifest(tmp_path)
    assert m.paths == ("c/a.jpg",)


# --------------------------------------------------------------------------- pairs


def test_pairs_int_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    m = load_manifest([("rel/a.jpg", 1), (tmp_path / "b.jpg", np.int64(0))])
    assert m.root is None
    assert m.paths == (f"{tmp_path.as_posix()}/rel/a.jpg", f"{tmp_path.as_posix()}/b.jpg")
    assert all(Path(p).is_absolute() for p in m.paths)
    assert m.labels is not None and m.labels.tolist() == [1, 0]
    assert m.label_kind == "class"


def test_pairs_class_names() -> None:
    m = load_manifest([("/x/a.jpg", "dog"), ("/x/b.jpg", "cat"), ("/x/c.jpg", "dog")])
    assert m.class_names == ("cat", "dog")
    assert m.labels is not None and m.labels.tolist() == [1, 0, 1]


def test_pairs_vectors() -> None:
    m = load_manifest([("/a.jpg", [0.0, 1.0]), ("/b.jpg", np.array([0.5, 0.5]))])
    assert m.label_kind == "vector"
    assert m.labels is not None and m.labels.dtype == np.float32
    assert m.labels.tolist() == [[0.0, 1.0], [0.5, 0.5]]


def test_pairs_unlabeled() -> None:
    m = load_manifest([("/a.jpg", None), ("/b.jpg", None)])
    assert m.label_kind == "none" and m.labels is None


def test_pairs_mixed_kinds() -> None:
    with pytest.raises(ManifestError, match=r"Item 1: label 'cat' is a name label.*int label"):
        load_manifest([("/a.jpg", 0), ("/b.jpg", "cat")])


def test_pairs_vector_lengths_differ() -> None:
    with pytest.raises(ManifestError, match=r"lengths \[1, 2\]"):
        load_manifest([("/a.jpg", [1.0]), ("/b.jpg", [0.0, 1.0])])


def test_pairs_bad_items() -> None:
    with pytest.raises(ManifestError, match=r"Item 0.*expected a \(path, label\) pair"):
        load_manifest(["/a.jpg"])  # type: ignore[list-item]
    with pytest.raises(ManifestError, match="Item 0: label True is not"):
        load_manifest([("/a.jpg", True)])
    with pytest.raises(ManifestError, match="Item 1: class index -2 is negative"):
        load_manifest([("/a.jpg", 0), ("/b.jpg", -2)])
    with pytest.raises(ManifestError, match="empty"):
        load_manifest([])


# --------------------------------------------------------------------------- batch labels


def test_batch_labels_int_and_categorical(tmp_path: Path) -> None:
    m = load_manifest(write_csv(tmp_path, "a.jpg,b\nb.jpg,a\nc.jpg,c\nd.jpg,b\n"))
    idx = np.array([3, 0, 2])
    ints = m.batch_labels(idx, "int")
    assert ints is not None and ints.dtype == np.int64 and ints.tolist() == [1, 1, 2]
    onehot = m.batch_labels(idx, "categorical")
    assert onehot is not None and onehot.dtype == np.float32
    assert onehot.tolist() == [[0, 1, 0], [0, 1, 0], [0, 0, 1]]


def test_batch_labels_categorical_uses_num_classes_from_max(tmp_path: Path) -> None:
    m = load_manifest(write_csv(tmp_path, "a.jpg,4\nb.jpg,0\n"))
    onehot = m.batch_labels(np.array([0]), "categorical")
    assert onehot is not None and onehot.shape == (1, 5) and onehot[0, 4] == 1.0


@pytest.mark.parametrize("mode", ["int", "categorical"])
def test_batch_labels_vector_passes_through(tmp_path: Path, mode: str) -> None:
    m = load_manifest(write_csv(tmp_path, "a.jpg,0,1,0\nb.jpg,1,0,0\n"))
    out = m.batch_labels(np.array([1, 1, 0]), mode)
    assert out is not None and out.dtype == np.float32
    assert out.tolist() == [[1, 0, 0], [1, 0, 0], [0, 1, 0]]


def test_batch_labels_unlabeled(tmp_path: Path) -> None:
    m = load_manifest(write_csv(tmp_path, "a.jpg\nb.jpg\n"))
    assert m.batch_labels(np.array([0, 1]), "int") is None


def test_batch_labels_unknown_mode(tmp_path: Path) -> None:
    m = load_manifest(write_csv(tmp_path, "a.jpg,0\n"))
    with pytest.raises(ConfigError, match="Unknown label_mode 'binary'"):
        m.batch_labels(np.array([0]), "binary")


# --------------------------------------------------------------------------- label modes


def test_validate_label_mode(tmp_path: Path) -> None:
    labeled = load_manifest(write_csv(tmp_path, "a.jpg,0\n", "l.csv"))
    vector = load_manifest(write_csv(tmp_path, "a.jpg,0,1\n", "v.csv"))
    unlabeled = load_manifest(write_csv(tmp_path, "a.jpg\n", "u.csv"))
    for m in (labeled, vector, unlabeled):
        validate_label_mode("int", m)
    validate_label_mode("categorical", labeled)
    validate_label_mode("categorical", vector)
    with pytest.raises(ConfigError, match="needs labels"):
        validate_label_mode("categorical", unlabeled)
    with pytest.raises(ConfigError, match=r"Unknown label_mode 'sparse'.*int, categorical"):
        validate_label_mode("sparse", labeled)


def test_manifest_rejects_inconsistent_fields() -> None:
    with pytest.raises(ManifestError, match="does not match labels"):
        Manifest(root=None, paths=("/a",), labels=None, label_kind="class")
    with pytest.raises(ManifestError, match="1 paths but 2 labels"):
        Manifest(root=None, paths=("/a",), labels=np.zeros(2, np.int64), label_kind="class")
    with pytest.raises(ManifestError, match=r"class_names has 2 names.*\[0, 2\)"):
        Manifest(
            root=None,
            paths=("/a",),
            labels=np.array([2], np.int64),
            class_names=("a", "b"),
            label_kind="class",
        )


def test_large_csv_round_trip(tmp_path: Path) -> None:
    n = 20_000
    rows = "".join(f"d{i % 13}/{i}.jpg,c{i % 7}\n" for i in range(n))
    m = load_manifest(write_csv(tmp_path, "path,label\n" + rows))
    assert len(m) == n
    assert m.labels is not None
    assert np.array_equal(m.labels, np.arange(n) % 7)
    assert m.paths[12345] == "d8/12345.jpg"

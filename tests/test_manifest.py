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
    path.parent.mkdir(parents=True, exist_ok=True)
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


@pytest.mark.parametrize("bad", ["C:\\img\\a.jpg", "d:/img/a.jpg"])
def test_csv_rejects_windows_drive_paths(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest(write_csv(tmp_path, f"path,label\nok.jpg,0\n{bad},1\n"))
    message = str(info.value)
    assert "data.csv, line 3" in message
    assert "Windows drive path" in message and "relative to the CSV's folder" in message


@pytest.mark.parametrize("bad", [".", "./", "/"])
def test_csv_path_naming_a_folder(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ManifestError, match=r"line 3: path '.*' names a folder"):
        load_manifest(write_csv(tmp_path, f"path,label\nok.jpg,0\n{bad},1\n"))


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


def test_manifest_rejects_relative_paths_without_an_absolute_root() -> None:
    with pytest.raises(ManifestError, match=r"path 'a\.jpg' is relative but root is None"):
        Manifest(root=None, paths=("/x/b.jpg", "a.jpg"), labels=None, label_kind="none")
    with pytest.raises(ManifestError, match="root 'data' is not absolute"):
        Manifest(root=Path("data"), paths=("a.jpg",), labels=None, label_kind="none")


def test_large_csv_round_trip(tmp_path: Path) -> None:
    n = 20_000
    rows = "".join(f"d{i % 13}/{i}.jpg,c{i % 7}\n" for i in range(n))
    m = load_manifest(write_csv(tmp_path, "path,label\n" + rows))
    assert len(m) == n
    assert m.labels is not None
    assert np.array_equal(m.labels, np.arange(n) % 7)
    assert m.paths[12345] == "d8/12345.jpg"


# --------------------------------------------------------------------------- paths and roots


def images(folder: Path, *names: str) -> list[Path]:
    """Real (tiny) files under ``folder``, resolved."""
    return [touch(folder / name).resolve() for name in names]


def test_headerless_vector_csv_with_absolute_paths_elsewhere(tmp_path: Path) -> None:
    # The seed's own form: `path,0,1,0,0,0`, absolute paths, CSV in another folder.
    a, b = images(tmp_path / "images", "a.jpg", "b.jpg")
    csv_path = write_csv(tmp_path / "lists", f"{a},0,1,0,0,0\n{b},0,0,0,0,1\n")
    m = load_manifest(csv_path)
    assert m.root == csv_path.parent.resolve()
    assert m.paths == (a.as_posix(), b.as_posix())
    assert m.label_kind == "vector" and m.labels is not None and m.labels.shape == (2, 5)
    # Outside the CSV's folder: local producers get no data root, and absolute paths.
    assert m.producer_root is None
    assert m.producer_paths == m.paths
    assert all(Path(p).is_file() for p in m.producer_paths)


def test_absolute_paths_inside_the_root_keep_the_root(tmp_path: Path) -> None:
    (a,) = images(tmp_path / "img", "a.jpg")
    m = load_manifest(write_csv(tmp_path, f"path,label\n{a},0\nimg/a.jpg,1\n"))
    assert m.paths == (a.as_posix(), "img/a.jpg")
    assert m.producer_root == tmp_path.resolve()
    assert m.producer_paths is m.paths


def test_absolute_paths_are_normalised_but_dotdot_is_kept(tmp_path: Path) -> None:
    (a,) = images(tmp_path / "img", "a.jpg")
    (tmp_path / "img" / "sub").mkdir()
    written = f"{tmp_path}//img/./sub/../a.jpg"
    m = load_manifest(write_csv(tmp_path, f"{written},0\n"))
    assert m.paths == (f"{tmp_path.as_posix()}/img/sub/../a.jpg",)
    assert Path(m.paths[0]).resolve() == a
    assert m.producer_root == tmp_path.resolve()  # folded, it stays inside


def test_root_dot_reads_rows_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The classic script's CSV: rows relative to where training runs, CSV somewhere else.
    images(tmp_path / "data" / "train", "a.jpg", "b.jpg")
    csv_path = write_csv(tmp_path / "lists", "data/train/a.jpg,0\ndata/train/b.jpg,1\n")
    monkeypatch.chdir(tmp_path)
    m = load_manifest(csv_path, root=".")
    assert m.root == tmp_path.resolve()
    assert m.paths == ("data/train/a.jpg", "data/train/b.jpg")
    assert m.producer_root == m.root and m.producer_paths == m.paths
    assert all((m.root / p).is_file() for p in m.paths)
    # Without root= the same rows are read relative to the CSV's folder, as before.
    assert load_manifest(csv_path).root == csv_path.parent.resolve()


def test_root_may_be_any_folder(tmp_path: Path) -> None:
    images(tmp_path / "data" / "img", "a.jpg")
    csv_path = write_csv(tmp_path / "lists", "img/a.jpg\n")
    m = load_manifest(csv_path, root=tmp_path / "data")
    assert m.root == (tmp_path / "data").resolve()
    assert (m.root / m.paths[0]).is_file()


def test_dotdot_inside_the_root_is_kept_and_confined(tmp_path: Path) -> None:
    images(tmp_path, "a.jpg")
    m = load_manifest(write_csv(tmp_path, "sub/../a.jpg,0\n"))
    assert m.paths == ("sub/../a.jpg",)
    assert m.producer_root == tmp_path.resolve() and m.producer_paths == m.paths


def test_dotdot_leaving_the_root_makes_producer_paths_absolute(tmp_path: Path) -> None:
    # ../ rows, as a notebook next to the data writes them: accepted; producers get them
    # absolute and local producers are not confined to the CSV's folder.
    (a,) = images(tmp_path / "images", "a.jpg")
    images(tmp_path / "lists", "b.jpg")
    m = load_manifest(write_csv(tmp_path / "lists", "../images/a.jpg,0\nb.jpg,1\n"))
    lists = (tmp_path / "lists").resolve()
    assert m.paths == ("../images/a.jpg", "b.jpg")
    assert m.producer_root is None
    assert m.producer_paths == (f"{lists.as_posix()}/../images/a.jpg", f"{lists.as_posix()}/b.jpg")
    assert [Path(p).resolve() for p in m.producer_paths] == [a, lists / "b.jpg"]


def test_root_that_is_not_a_folder(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path, "a.jpg,0\n")
    with pytest.raises(ConfigError) as info:
        load_manifest(csv_path, root=tmp_path / "nope")
    message = str(info.value)
    assert "nope" in message and "is not a directory" in message and 'root="."' in message
    with pytest.raises(ConfigError, match="is not a directory"):
        load_manifest([("a.jpg", 0)], root=csv_path)


def test_root_is_refused_for_a_directory_or_a_manifest(tmp_path: Path) -> None:
    touch(tmp_path / "cat" / "a.jpg")
    with pytest.raises(ConfigError, match=r"is a directory source.*drop it"):
        load_manifest(tmp_path, root=tmp_path)
    m = load_manifest(tmp_path)
    with pytest.raises(ConfigError, match=r"a Manifest already has its root.*drop it"):
        load_manifest(m, root=tmp_path)
    assert m.producer_root == tmp_path.resolve()


def test_pairs_with_absolute_paths(tmp_path: Path) -> None:
    a, b = images(tmp_path / "x", "a.jpg", "b.jpg")
    m = load_manifest([(a, 0), (str(b), 1)])
    assert m.root is None and m.paths == (a.as_posix(), b.as_posix())
    assert m.producer_root is None and m.producer_paths == m.paths
    assert all(Path(p).is_file() for p in m.producer_paths)


def test_pairs_with_a_root(tmp_path: Path) -> None:
    (a,) = images(tmp_path / "data", "a.jpg")
    (b,) = images(tmp_path / "elsewhere", "b.jpg")
    inside = load_manifest([("a.jpg", 0), (a, 1)], root=tmp_path / "data")
    assert inside.root == (tmp_path / "data").resolve()
    assert inside.paths == ("a.jpg", a.as_posix())
    assert inside.producer_root == inside.root and inside.producer_paths == inside.paths
    mixed = load_manifest([("a.jpg", 0), (b, 1)], root=tmp_path / "data")
    assert mixed.producer_root is None
    assert [Path(p) for p in mixed.producer_paths] == [a, b]


def test_pair_path_naming_a_folder() -> None:
    with pytest.raises(ManifestError, match="Item 1: path '' names a folder"):
        load_manifest([("/a.jpg", 0), ("", 1)])


def test_producer_root_of_a_large_relative_manifest_is_cheap(tmp_path: Path) -> None:
    paths = tuple(f"d{i % 13}/{i}.jpg" for i in range(200_000))
    m = Manifest(root=tmp_path.resolve(), paths=paths, labels=None, label_kind="none")
    assert m.producer_root == tmp_path.resolve() and m.producer_paths is paths


# --------------------------------------------------------------------------- as producers see them


def test_producer_paths_reach_the_files_through_local_producers_locators(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zerofeed.producer.paths import SampleLocator

    inside = images(tmp_path / "work" / "data", "a.jpg")
    outside = images(tmp_path / "shared", "b.jpg")
    monkeypatch.chdir(tmp_path / "work")
    csv_path = write_csv(tmp_path / "lists", f"data/a.jpg,0\n{outside[0]},1\n")
    for m, expected in [
        (load_manifest(csv_path, root="."), [*inside, *outside]),
        (load_manifest(write_csv(tmp_path / "work", "data/a.jpg,0\n")), inside),
    ]:
        locator = SampleLocator(m.producer_root)
        assert [locator.locate(p).resolve() for p in m.producer_paths] == expected


def test_remote_data_root_refuses_an_outside_absolute_path_naming_the_resolved_path(
    tmp_path: Path,
) -> None:
    from zerofeed.common.errors import BadSampleError
    from zerofeed.producer.paths import SampleLocator

    root = tmp_path / "data"
    images(root, "a.jpg")
    (target,) = images(tmp_path / "private", "secret.jpg")
    (tmp_path / "link").symlink_to(tmp_path / "private")
    via_link = f"{tmp_path}/link/secret.jpg"
    m = load_manifest(write_csv(tmp_path / "lists", f"{root}/a.jpg,0\n{via_link},1\n"))
    locator = SampleLocator(root)  # zerofeed producer --data-root <tmp>/data
    assert locator.locate(m.producer_paths[0]) == root.resolve() / "a.jpg"
    with pytest.raises(BadSampleError) as caught:
        locator.locate(m.producer_paths[1])
    error = caught.value
    assert error.kind == "outside_root" and error.path == via_link
    assert f"resolves to {str(target)!r}" in error.reason  # the real file, not the link's path
    assert f"data root {str(root.resolve())!r}" in error.reason
    assert "--data-root that contains it" in error.reason


@pytest.mark.parametrize("escape", ["../outside/b.jpg", "sub/../../outside/b.jpg"])
def test_remote_data_root_refuses_a_relative_path_escaping_it(tmp_path: Path, escape: str) -> None:
    from zerofeed.common.errors import BadSampleError
    from zerofeed.producer.paths import SampleLocator

    images(tmp_path / "outside", "b.jpg")
    (tmp_path / "data" / "sub").mkdir(parents=True)
    with pytest.raises(BadSampleError) as caught:
        SampleLocator(tmp_path / "data").locate(escape)
    assert caught.value.kind == "outside_root"
    assert repr(str((tmp_path / "outside" / "b.jpg").resolve())) in caught.value.reason

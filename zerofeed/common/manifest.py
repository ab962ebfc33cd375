"""Manifests: the list of samples (paths and labels) that a feed reads from.

:func:`load_manifest` accepts three kinds of source and returns one :class:`Manifest`:

- a **CSV file**: the first column is an image path, absolute or relative to the root folder (by
  default the CSV's folder); the remaining columns are the label (none, one class column, or
  several numeric columns forming a vector);
- a **directory of class subfolders**, laid out as for ``keras.utils.image_dataset_from_directory``;
- a **sequence of** ``(path, label)`` **pairs**.

A :class:`Manifest` keeps the paths as written; :attr:`Manifest.producer_root` and
:attr:`Manifest.producer_paths` say how producers are to be told about them.

Only the standard library and numpy are used here: producers and consumers both import this module.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import numbers
import os
import posixpath
import re
import stat
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np

from zerofeed.common.errors import BadSampleError, ConfigError, ManifestError
from zerofeed.common.locations import is_url, join_url, parse_member, split_url

__all__ = [
    "IMAGE_EXTENSIONS",
    "LABEL_MODES",
    "MAX_ONE_HOT_CLASSES",
    "Manifest",
    "ManifestSource",
    "RootArgument",
    "load_manifest",
    "validate_label_mode",
]

log = logging.getLogger("zerofeed.consumer")

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)
LABEL_MODES: tuple[str, ...] = ("int", "categorical")
MAX_ONE_HOT_CLASSES = 100_000
"""The most classes ``label_mode="categorical"`` builds one-hot vectors for."""

LabelKind = Literal["class", "vector", "none"]
ManifestSource = str | os.PathLike[str] | Sequence[tuple[str | os.PathLike[str], object]]
RootArgument = str | os.PathLike[str] | None

_INT = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_SUSPECT_PATH = re.compile(r"^[./\\]|^[A-Za-z]:|\\|//|/\.|\.$|/$")
_DRIVE = re.compile(r"[A-Za-z]:[\\/]")
_ACCEPTED_SOURCES = (
    "a CSV file (path,label rows; paths absolute, relative to the CSV's folder, or s3:// and "
    "http(s):// URLs), a directory with one subfolder of images per class, a folder of tar "
    "shards (written by `zerofeed pack`, or WebDataset tars), any of these at an s3:// or "
    "http(s):// URL, or a sequence of (path, label) pairs"
)


@dataclass(frozen=True, kw_only=True, eq=False)
class Manifest:
    """The samples of a data set: one path and (optionally) one label per sample.

    **Paths and the root.** ``paths`` are kept as the source wrote them (POSIX separators, ``.``
    and empty components dropped, ``..`` kept): each is either absolute or relative to ``root``.
    A relative path may contain ``..`` and even leave ``root`` (``../images/a.jpg``); it means
    ``root/../images/a.jpg``. Whether a path lies inside ``root`` is decided on its text
    (``..`` folded), not by following symlinks: the producers check the real location.

    **What producers are told.** Every producer gets the same paths, :attr:`producer_paths`, and
    resolves them with its own data root (``zerofeed producer --data-root``), refusing any path
    that lands outside it (``outside_root``, naming the resolved path):

    - every path inside ``root`` (the usual case: a CSV of relative paths): producers get the
      paths as written, and local producers are started with ``--data-root`` = :attr:`producer_root`
      = ``root``. Remote producers point ``--data-root`` at their copy of that folder, wherever
      it is mounted (absolute paths then need the same mount point).
    - some path outside ``root``, or no ``root``: producers get absolute paths (relative ones
      joined onto ``root``), and :attr:`producer_root` is ``None``: local producers run as the
      same user on the same machine and read any path, like Keras' ``flow_from_dataframe``.
      Remote producers need the images at those absolute paths, under their ``--data-root``.

    Attributes:
        root: absolute folder that relative ``paths`` resolve against; ``None`` only when every
            path is absolute (``(path, label)`` pairs read without ``root=``).
        paths: POSIX-style paths as written: absolute, or relative to ``root``.
        labels: ``int64`` of shape ``(N,)`` for class labels, ``float32`` of shape ``(N, K)`` for
            vector labels, ``None`` for unlabeled data. The array is read-only.
        class_names: sorted class names when labels came from names or folders, else ``None``.
        label_kind: ``"class"``, ``"vector"`` or ``"none"``.
    """

    root: Path | None
    paths: tuple[str, ...]
    labels: np.ndarray | None
    class_names: tuple[str, ...] | None = None
    label_kind: LabelKind

    def __post_init__(self) -> None:
        _check_consistent(self)
        if self.labels is not None:
            self.labels.setflags(write=False)

    def __len__(self) -> int:
        return len(self.paths)

    @cached_property
    def producer_root(self) -> Path | None:
        """The ``--data-root`` to start local producers with: ``root`` when every path lies
        inside it, else ``None`` (no confinement; :attr:`producer_paths` are then absolute)."""
        if self.root is None:
            return None
        return self.root if _all_inside(self.paths, self.root.as_posix()) else None

    @cached_property
    def producer_paths(self) -> tuple[str, ...]:
        """The path to send producers for each row (see the class docstring): ``paths`` itself
        when :attr:`producer_root` is set, else every path made absolute against ``root``."""
        if self.root is None or self.producer_root is not None:
            return self.paths
        prefix = _folder_prefix(self.root.as_posix())
        return tuple(p if p.startswith("/") or is_url(p) else prefix + p for p in self.paths)

    @cached_property
    def origins(self) -> frozenset[str]:
        """The object stores its paths name (``s3://bucket``, ``https://host:port``): what
        local producers are allowed to read (``zerofeed producer --allow``)."""
        return frozenset("/".join(prefix.split("/", 3)[:3]) for prefix in self.url_prefixes)

    @cached_property
    def url_prefixes(self) -> frozenset[str]:
        """For each object store its paths name, the deepest folder URL holding all of them
        (``s3://bucket/train/``): a producer gets this feed's tasks only if its ``--allow``
        covers every one, so none of its samples is refused as ``not_allowed``."""
        by_origin: dict[str, list[str]] = {}
        for path in self.paths:
            if is_url(path):
                member = parse_member(path)
                url = member.container if member is not None else path
                by_origin.setdefault("/".join(url.split("/", 3)[:3]), []).append(url)
        return frozenset(
            # character by character on purpose, then cut back to the last "/": a folder URL
            os.path.commonprefix(urls).rsplit("/", 1)[0] + "/"  # noqa: RUF071
            for urls in by_origin.values()
        )

    @cached_property
    def num_classes(self) -> int | None:
        """``len(class_names)``, else the largest class index + 1, else ``None`` (computed once)."""
        if self.class_names is not None:
            return len(self.class_names)
        if self.label_kind == "class" and self.labels is not None and len(self.labels):
            return int(self.labels.max()) + 1
        return None

    def batch_labels(self, indices: np.ndarray, label_mode: str) -> np.ndarray | None:
        """Labels of the samples at ``indices`` (shape ``(B,)``), ready to hand to Keras.

        ``"int"`` gives class indices as ``int64`` ``(B,)``; ``"categorical"`` gives one-hot
        ``float32`` ``(B, num_classes)``. Vector labels come back as ``float32`` ``(B, K)`` in both
        modes; unlabeled manifests give ``None``.
        """
        if label_mode not in LABEL_MODES:
            raise ConfigError(_unknown_mode_message(label_mode))
        if self.labels is None:
            return None
        picked = self.labels[np.asarray(indices, dtype=np.intp)]
        if self.label_kind == "vector" or label_mode == "int":
            return picked
        return _one_hot(picked, self.num_classes or 0)


def load_manifest(
    source: ManifestSource | Manifest, *, root: RootArgument = None, header: bool | None = None
) -> Manifest:
    """Read ``source`` (a CSV file, a class-folder directory or ``(path, label)`` pairs).

    ``root`` is the folder relative paths are relative to, for CSV files and pairs; it is
    resolved against the current directory now (``root="."`` reads rows written relative to the
    working directory, as a training script opening them would). How the paths reach producers
    is described in :class:`Manifest`.

    **CSV file** (a ``.csv`` path, or any existing file):

    - Blank lines are ignored and every cell is stripped of surrounding whitespace.
    - The first column is an image path: absolute, or relative to ``root`` (default: the CSV's
      folder). ``\\`` separators are read as ``/``; ``..`` components are allowed (see
      :class:`Manifest`); Windows drive paths (``C:\\img\\a.jpg``) are rejected.
    - **Header rule** (``header=None``): the first row is a header when its first cell has no
      file extension (``path``, ``filename``), or when some of its label cells are not numbers
      while all of the second row's are (``img.jpg,label`` followed by ``a.jpg,3``). Otherwise it
      is data. A first row taken as a header is logged; ``header=True`` or ``header=False`` says
      it outright (files without extensions need ``header=False``).
    - **Labels**: no further column means unlabeled; one column of whole numbers (``3``, also
      written ``3.0``) means class indices (``>= 0``); one column of other text means class
      names, indexed in sorted order; one column of numbers that are not all whole, or several
      columns (``a.jpg,0,1,0``), means a ``float32`` label vector.

    **Directory**: one subfolder per class; class names are the sorted subfolder names (as for
    ``keras.utils.image_dataset_from_directory``), samples are the files with an
    :data:`IMAGE_EXTENSIONS` suffix anywhere below each class folder, sorted. Files directly in the
    directory are ignored. ``root`` is the directory; ``root=`` is refused.

    **Pairs**: ``(path, label)`` with labels all ints (class indices), all strs (class names,
    indexed in sorted order), all sequences of numbers of one length (vectors) or all ``None``
    (unlabeled). Without ``root=``, paths are made absolute against the current directory and the
    manifest's ``root`` is ``None``; with it, relative paths stay relative to ``root``.

    A :class:`Manifest` passed in is returned as is (``root=`` is then refused).

    Raises:
        ManifestError: the source does not exist or cannot be read as a manifest; the message says
            where (file and line) and how to fix it.
        ConfigError: ``root`` is not a directory, or is given with a directory or a Manifest.
    """
    if isinstance(source, Manifest):
        _refuse_root(root, "a Manifest already has its root")
        return source
    if isinstance(source, str) and is_url(source):
        _refuse_root(root, "the relative rows of a remote manifest are relative to its folder")
        return _load_url(source, header)
    if isinstance(source, str | os.PathLike):
        return _load_path(Path(os.fspath(source)), root, header)
    if isinstance(source, Sequence):
        return _load_pairs(source, None if root is None else _resolve_root(root))
    raise ManifestError(
        f"Cannot read a manifest from a {type(source).__name__}; expected {_ACCEPTED_SOURCES}."
    )


def validate_label_mode(label_mode: str, manifest: Manifest) -> None:
    """Raise :class:`ConfigError` unless ``label_mode`` can be used with ``manifest``'s labels."""
    if label_mode not in LABEL_MODES:
        raise ConfigError(_unknown_mode_message(label_mode))
    if label_mode == "categorical" and manifest.label_kind == "none":
        raise ConfigError(
            'label_mode="categorical" needs labels, but the manifest has none. Add a label column '
            "to the CSV (or use class subfolders), or feed images without labels."
        )
    classes = manifest.num_classes
    if label_mode == "categorical" and classes is not None and classes > MAX_ONE_HOT_CLASSES:
        labels = manifest.labels if manifest.labels is not None else np.zeros(1, np.int64)
        row = int(np.argmax(labels))
        raise ConfigError(
            f"label {int(labels[row])} (manifest row {row}, {manifest.paths[row]!r}) makes "
            f'label_mode="categorical" one-hot vectors of {classes:,} classes, over the '
            f"{MAX_ONE_HOT_CLASSES:,} allowed ({classes * 4 / 2**20:,.0f} MiB per sample). Fix that "
            'label if it is a typo, or use label_mode="int" with a sparse loss.'
        )


# --------------------------------------------------------------------------- checks and helpers


def _unknown_mode_message(label_mode: object) -> str:
    return f"Unknown label_mode {label_mode!r}; expected one of {', '.join(LABEL_MODES)}."


def _resolve_root(root: str | os.PathLike[str]) -> Path:
    resolved = Path(os.fspath(root)).resolve()
    if not resolved.is_dir():
        raise ConfigError(
            f"root {os.fspath(root)!r} (resolved to {str(resolved)!r}) is not a directory. Pass "
            'the folder the manifest\'s relative paths are relative to (root="." for the current '
            "directory), or leave root=None to use the CSV's folder."
        )
    return resolved


def _refuse_root(root: RootArgument, why: str) -> None:
    if root is not None:
        raise ConfigError(
            f"root={os.fspath(root)!r} cannot be applied: {why}. root= is for CSV files and "
            "(path, label) pairs; drop it."
        )


def _folder_prefix(folder: str) -> str:
    return folder if folder.endswith("/") else folder + "/"


def _all_inside(paths: Sequence[str], root: str) -> bool:
    """Whether every path (absolute, or relative to ``root``) lies below ``root``, by its text."""
    prefix = _folder_prefix(root)
    text = "\n" + "\n".join(paths)
    if ".." not in text and text.count("\n") == len(paths):
        # One C-speed pass for millions of rows: every absolute path starts with the prefix.
        return text.count("\n/") == text.count("\n" + prefix)
    return all(_inside(p, prefix) for p in paths)


def _inside(path: str, prefix: str) -> bool:
    if is_url(path):
        return True  # not a file: --allow, not the data root, decides who reads it
    if ".." in path:
        path = posixpath.normpath(path)
    if path.startswith("/"):
        return path.startswith(prefix)
    return path != ".." and not path.startswith("../")


def _normalise(path: str) -> str:
    """``path`` with ``.`` and empty components dropped (``..`` kept: symlinks decide it)."""
    kept = "/".join(p for p in path.split("/") if p not in (".", ""))
    return "/" + kept if path.startswith("/") else kept


def _check_consistent(m: Manifest) -> None:
    if m.root is not None and not m.root.is_absolute():
        raise ManifestError(f"root {str(m.root)!r} is not absolute; give an absolute folder.")
    if m.root is None:
        relative = next((p for p in m.paths if not p.startswith("/") and not is_url(p)), None)
        if relative is not None:
            raise ManifestError(
                f"path {relative!r} is relative but root is None; give the folder it is "
                "relative to as root, or make every path absolute."
            )
    kind_ok = {
        "none": m.labels is None,
        "class": m.labels is not None and m.labels.dtype == np.int64 and m.labels.ndim == 1,
        "vector": m.labels is not None and m.labels.dtype == np.float32 and m.labels.ndim == 2,
    }
    if not kind_ok.get(m.label_kind, False):
        raise ManifestError(
            f"label_kind {m.label_kind!r} does not match labels "
            f"{None if m.labels is None else (m.labels.dtype, m.labels.shape)}; "
            'expected int64 (N,) for "class", float32 (N, K) for "vector" and None for "none".'
        )
    if m.labels is not None and len(m.labels) != len(m.paths):
        raise ManifestError(f"{len(m.paths)} paths but {len(m.labels)} labels; they must match.")
    if m.class_names is not None and not _are_class_indices(m.labels, len(m.class_names)):
        raise ManifestError(
            f"class_names has {len(m.class_names)} names, but the labels are not class "
            f"indices in [0, {len(m.class_names)}); pass class_names=None or fix the labels."
        )


def _are_class_indices(labels: np.ndarray | None, num_classes: int) -> bool:
    if labels is None or labels.ndim != 1 or labels.dtype != np.int64:
        return False
    return not len(labels) or (labels.min() >= 0 and labels.max() < num_classes)


def _one_hot(class_indices: np.ndarray, num_classes: int) -> np.ndarray:
    out = np.zeros((len(class_indices), num_classes), dtype=np.float32)
    out[np.arange(len(class_indices)), class_indices] = 1.0
    return out


def _class_labels_from_names(names: Sequence[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    class_names = tuple(sorted(set(names)))
    index = {name: i for i, name in enumerate(class_names)}
    labels = np.fromiter((index[n] for n in names), dtype=np.int64, count=len(names))
    return labels, class_names


def _load_path(path: Path, root: RootArgument, header: bool | None) -> Manifest:
    from zerofeed.common import shards

    if shards.is_shard_source(path):
        _refuse_root(root, f"{str(path)!r} holds tar shards, whose index names their members")
        return shards.load_shards(str(path.resolve()))
    if path.is_dir():
        _refuse_root(root, f"{str(path)!r} is a directory source, whose paths are relative to it")
        return _load_directory(path)
    if path.is_file():
        base = path.resolve().parent if root is None else _resolve_root(root)
        return _load_csv(path, base, header)
    if path.exists():
        raise ManifestError(
            f"Manifest source {str(path)!r} is {_special_kind(path)}, not a file: a manifest is "
            f"read whole before training starts. Pass {_ACCEPTED_SOURCES}."
        )
    raise ManifestError(f"Manifest source {str(path)!r} does not exist. Pass {_ACCEPTED_SOURCES}.")


def _special_kind(path: Path) -> str:
    mode = path.stat().st_mode
    for test, kind in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return kind
    return "a special file"


# --------------------------------------------------------------------------- CSV


@dataclass
class _CsvTable:
    """The rows of a CSV manifest: paths, label cells (row-major) and source line numbers."""

    where: str
    label_width: int
    paths: list[str] = field(default_factory=list)
    cells: list[str] = field(default_factory=list)
    lines: array[int] = field(default_factory=lambda: array("q"))

    def line_of_cell(self, i: int) -> int:
        return self.lines[i // self.label_width]


def _load_url(url: str, header: bool | None) -> Manifest:
    """A manifest in an object store or on a web server: a CSV (relative rows are relative to
    its folder URL), or tar shards (a folder URL ending in ``/``, or one ``.tar``)."""
    from zerofeed.common import shards
    from zerofeed.common.storage import ObjectStores

    try:
        split_url(url)
    except ConfigError as exc:
        raise ManifestError(str(exc)) from exc
    if url.endswith(("/", ".tar")):
        return shards.load_shards(url)
    try:
        data = ObjectStores().read(url)
    except BadSampleError as exc:
        hint = ""
        if exc.kind == "missing" and not posixpath.splitext(url)[1]:
            hint = f"; if {url} is a folder of tar shards, end it with '/'"
        raise ManifestError(
            f"cannot read the manifest {url}: {exc.kind}: {exc.reason}{hint}"
        ) from exc
    try:
        text = io.StringIO(data.decode("utf-8-sig"), newline="")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{url}: the CSV manifest is not UTF-8 text: {exc}") from exc
    table = _read_csv_table(_csv_stream_rows(text, url), url, header)
    folder = url.rsplit("/", 1)[0] + "/"
    joined = []
    for line, path in zip(table.lines, table.paths, strict=True):
        if path.startswith("/"):
            raise ManifestError(
                f"{url}, line {line}: {path!r} is a local path, but a remote manifest's rows are "
                "relative to its folder URL or are URLs themselves; write it relative, or as a URL"
            )
        joined.append(_url_cell(join_url(folder, path), line, url))
    table.paths = joined
    return _table_manifest(table, None)


def _load_csv(csv_path: Path, root: Path, header: bool | None = None) -> Manifest:
    """Read a CSV manifest (rules in :func:`load_manifest`); relative paths are under ``root``."""
    return _table_manifest(_read_csv_table(_csv_rows(csv_path), str(csv_path), header), root)


def _table_manifest(table: _CsvTable, root: Path | None) -> Manifest:
    if not table.paths:
        raise ManifestError(
            f"{table.where}: the manifest holds no samples; add `path[,label]` rows."
        )
    labels, class_names, kind = _parse_labels(table)
    return Manifest(
        root=root,
        paths=tuple(table.paths),
        labels=labels,
        class_names=class_names,
        label_kind=kind,
    )


def _csv_rows(csv_path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, stripped_cells)`` for every non-blank row of a CSV file."""
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as f:
            yield from _csv_stream_rows(f, str(csv_path))
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"{csv_path}: cannot read the CSV manifest: {e}") from e


def _csv_stream_rows(stream: Iterable[str], where: str) -> Iterator[tuple[int, list[str]]]:
    try:
        reader = csv.reader(stream)
        for row in reader:
            cells = [c.strip() for c in row]
            if any(cells):
                yield reader.line_num, cells
    except csv.Error as e:
        raise ManifestError(f"{where}: cannot read the CSV manifest: {e}") from e


def _read_csv_table(
    rows: Iterator[tuple[int, list[str]]], where: str, header: bool | None = None
) -> _CsvTable:
    head = list(itertools.islice(rows, 2))
    if not head:
        return _CsvTable(where=where, label_width=0)
    first_line, first = head[0]
    if header is None and _is_header(first, head[1][1] if len(head) > 1 else None):
        log.info(
            "%s: line %d (%s) is read as a header, not a sample; pass header=False if it is data",
            where,
            first_line,
            ",".join(first),
        )
        header = True
    if header:
        head = head[1:]
    table = _CsvTable(where=where, label_width=len(first) - 1)
    for line, cells in itertools.chain(head, rows):
        if len(cells) != len(first):
            raise ManifestError(
                f"{table.where}, line {line}: {len(cells)} columns, but line {first_line} has "
                f"{len(first)}. Every row needs the same columns: a path, then the same number "
                "of label cells."
            )
        path = cells[0]
        if is_url(path):
            path = _url_cell(path, line, table.where)
        elif not path or _SUSPECT_PATH.search(path):
            path = _csv_path(path, line, table.where)
        table.paths.append(path)
        table.cells.extend(cells[1:])
        table.lines.append(line)
    return table


def _is_header(row1: list[str], row2: list[str] | None) -> bool:
    if not posixpath.splitext(row1[0].replace("\\", "/"))[1]:
        return True
    if row2 is None or len(row1) < 2 or len(row2) != len(row1):
        return False
    row1_numeric = all(_NUMBER.fullmatch(c) for c in row1[1:])
    row2_numeric = all(_NUMBER.fullmatch(c) for c in row2[1:])
    return not row1_numeric and row2_numeric


def _url_cell(cell: str, line: int, where: str) -> str:
    """``cell`` if it is an object URL, or a shard member of one, that names an object."""
    member = parse_member(cell)
    try:
        split_url(member.container if member is not None else cell)
    except ConfigError as exc:
        raise ManifestError(f"{where}, line {line}: {exc}") from exc
    return cell


def _csv_path(cell: str, line: int, where: str) -> str:
    """``cell`` as a POSIX path (see :func:`_normalise`); refuses empty and Windows drive paths."""
    if not cell:
        raise ManifestError(f"{where}, line {line}: the path cell is empty; give an image path.")
    if _DRIVE.match(cell):
        raise ManifestError(
            f"{where}, line {line}: path {cell!r} is a Windows drive path. Producers read POSIX "
            "paths: write it absolute (/mnt/c/img/a.jpg) or relative to the CSV's folder."
        )
    path = _normalise(cell.replace("\\", "/"))
    if not path or path == "/":
        raise ManifestError(f"{where}, line {line}: path {cell!r} names a folder; give an image.")
    return path


def _parse_labels(table: _CsvTable) -> tuple[np.ndarray | None, tuple[str, ...] | None, LabelKind]:
    if table.label_width == 0:
        return None, None, "none"
    if table.label_width > 1:
        return _vector_labels(table), None, "vector"
    distinct = set(table.cells)
    numeric = {c for c in distinct if _NUMBER.fullmatch(c)}
    if numeric and len(numeric) < len(distinct):
        raise ManifestError(_mixed_labels_message(table, numeric))
    if not numeric:
        labels, class_names = _class_labels_from_names(table.cells)
        return labels, class_names, "class"
    if all(_INT.fullmatch(c) for c in numeric):
        return _int_labels(table), None, "class"
    values = _vector_labels(table)
    if np.all(values == np.round(values)) and np.all(np.abs(values) < 2**24):
        return _int_labels(table, values.astype(np.int64).ravel()), None, "class"  # 3.0: a class
    return values, None, "vector"


def _mixed_labels_message(table: _CsvTable, numeric: set[str]) -> str:
    cells = table.cells
    first_is_number = cells[0] in numeric
    bad = next(i for i, c in enumerate(cells) if (c in numeric) != first_is_number)
    kinds = ("a number", "not a number") if first_is_number else ("not a number", "a number")
    return (
        f"{table.where}, line {table.lines[bad]}: label {cells[bad]!r} is {kinds[1]}, but the "
        f"label on line {table.lines[0]} ({cells[0]!r}) is {kinds[0]}. A label column holds "
        "either class indices or class names, not both; fix that line."
    )


def _int_labels(table: _CsvTable, labels: np.ndarray | None = None) -> np.ndarray:
    cells = table.cells
    if labels is None:
        try:
            labels = np.fromiter(map(int, cells), dtype=np.int64, count=len(cells))
        except (OverflowError, ValueError) as e:
            raise ManifestError(f"{table.where}: a class index does not fit in 64 bits: {e}") from e
    negative = np.flatnonzero(labels < 0)
    if len(negative):
        i = int(negative[0])
        raise ManifestError(
            f"{table.where}, line {table.lines[i]}: class index {cells[i]} is negative; class "
            "indices start at 0. Fix the label, or use class names instead."
        )
    return labels


def _vector_labels(table: _CsvTable) -> np.ndarray:
    bad = {c for c in set(table.cells) if not _NUMBER.fullmatch(c)}
    if bad:
        i = next(i for i, c in enumerate(table.cells) if c in bad)
        width = table.label_width
        raise ManifestError(
            f"{table.where}, line {table.line_of_cell(i)}: label column {i % width + 2} holds "
            f"{table.cells[i]!r}, which is not a number. With {width} label columns every label "
            "cell must be a number (a label vector such as a one-hot row)."
        )
    return np.array(table.cells, dtype=np.float32).reshape(-1, table.label_width)


# --------------------------------------------------------------------------- directory


def _load_directory(directory: Path) -> Manifest:
    """Read a folder with one subfolder of images per class (sorted names, as Keras does)."""
    root = directory.resolve()
    class_names = tuple(sorted(e.name for e in os.scandir(root) if e.is_dir()))
    if not class_names:
        raise ManifestError(
            f"{str(root)!r} has no subfolders. A directory source needs one subfolder of images "
            "per class (root/<class_name>/<image>); images directly in it are ignored."
        )
    paths: list[str] = []
    labels: list[int] = []
    for index, name in enumerate(class_names):
        found = _images_under(root, name)
        paths.extend(found)
        labels.extend([index] * len(found))
    if not paths:
        raise ManifestError(
            f"No images found under the class folders of {str(root)!r} (looked for "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))}). Put images in root/<class_name>/."
        )
    return Manifest(
        root=root,
        paths=tuple(paths),
        labels=np.asarray(labels, dtype=np.int64),
        class_names=class_names,
        label_kind="class",
    )


def _images_under(root: Path, class_name: str) -> list[str]:
    """Sorted POSIX paths, relative to ``root``, of the images below ``root/class_name``."""
    found: list[str] = []
    seen: set[str] = set()
    for folder, dirs, files in os.walk(root / class_name, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs.clear()
            continue
        seen.add(real)
        rel = Path(folder).relative_to(root).as_posix()
        found.extend(
            f"{rel}/{f}" for f in files if posixpath.splitext(f)[1].lower() in IMAGE_EXTENSIONS
        )
    return sorted(found)


# --------------------------------------------------------------------------- pairs


def _load_pairs(pairs: Sequence[object], root: Path | None) -> Manifest:
    """Pairs; without ``root`` relative paths are made absolute against the current directory."""
    if not pairs:
        raise ManifestError("The sequence of (path, label) pairs is empty; give at least one.")
    cwd = os.getcwd() if root is None else None
    paths: list[str] = []
    raw: list[object] = []
    for i, pair in enumerate(pairs):
        path, label = _split_pair(pair, i)
        if is_url(path):
            paths.append(_url_cell(path, i, "the pairs"))
        else:
            paths.append(_normalise(path if cwd is None else os.path.join(cwd, path)))
        raw.append(label)
    labels, class_names, kind = _pair_labels(raw)
    return Manifest(
        root=root, paths=tuple(paths), labels=labels, class_names=class_names, label_kind=kind
    )


def _split_pair(pair: object, i: int) -> tuple[str, object]:
    if isinstance(pair, str | bytes) or not isinstance(pair, Sequence) or len(pair) != 2:
        raise ManifestError(
            f"Item {i} of the pairs is {pair!r}; expected a (path, label) pair. Use None as the "
            "label for unlabeled images."
        )
    path, label = pair
    if not isinstance(path, str | os.PathLike):
        raise ManifestError(f"Item {i}: path {path!r} is not a str or os.PathLike.")
    text = os.fspath(path)
    if not _normalise(text).strip("/"):
        raise ManifestError(f"Item {i}: path {text!r} names a folder; give an image path.")
    return text, label


def _label_kind(label: object) -> str:
    if label is None:
        return "none"
    if isinstance(label, bool | np.bool_):
        return "unknown"
    if isinstance(label, numbers.Integral):
        return "int"
    if isinstance(label, str):
        return "name"
    if isinstance(label, Sequence | np.ndarray) and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in label
    ):
        return "vector"
    return "unknown"


def _pair_labels(raw: list[object]) -> tuple[np.ndarray | None, tuple[str, ...] | None, LabelKind]:
    kinds = [_label_kind(label) for label in raw]
    for i, kind in enumerate(kinds):
        if kind == "unknown":
            raise ManifestError(
                f"Item {i}: label {raw[i]!r} is not an int, a class name (str), a sequence of "
                "numbers or None."
            )
        if kind != kinds[0]:
            raise ManifestError(
                f"Item {i}: label {raw[i]!r} is a {kind} label but item 0's ({raw[0]!r}) is a "
                f"{kinds[0]} label; all pairs need the same kind of label."
            )
    return _labels_of_kind(kinds[0], raw)


def _labels_of_kind(
    kind: str, raw: list[object]
) -> tuple[np.ndarray | None, tuple[str, ...] | None, LabelKind]:
    if kind == "none":
        return None, None, "none"
    if kind == "name":
        labels, class_names = _class_labels_from_names([str(r) for r in raw])
        return labels, class_names, "class"
    if kind == "int":
        ints = np.asarray(raw, dtype=np.int64)
        if (ints < 0).any():
            i = int(np.flatnonzero(ints < 0)[0])
            raise ManifestError(f"Item {i}: class index {raw[i]} is negative; indices start at 0.")
        return ints, None, "class"
    return _vector_pair_labels(raw), None, "vector"


def _vector_pair_labels(raw: list[object]) -> np.ndarray:
    lengths = {len(v) for v in raw}  # type: ignore[arg-type]
    if len(lengths) != 1 or 0 in lengths:
        raise ManifestError(
            f"Vector labels have lengths {sorted(lengths)}; every label vector must have the same, "
            "non-zero length."
        )
    return np.asarray(raw, dtype=np.float32).reshape(len(raw), -1)

"""Tar shards: WebDataset-compatible archives of samples, and the index that makes them random-access.

What ``zerofeed pack`` writes to a folder (local, or ``s3://bucket/prefix/``)::

    shard-000000.tar   members KEY.jpg (the image's bytes, as they were) and KEY.cls (the class
    shard-000001.tar   index, ASCII) or KEY.json (a label vector): WebDataset's layout
    index.csv          path,label rows, one per sample: shard-000000.tar#OFFSET+SIZE,3
    classes.json       the class names, when the source had them

``index.csv`` is an ordinary manifest whose paths are byte ranges of the shards
(:mod:`zerofeed.common.locations`), so a shard source keeps everything a file list has: the plan
shuffles samples across all shards each epoch, every sample is read exactly once per epoch with
one ``pread`` or one ranged GET, and which producer reads it changes nothing.

Tars without an index (WebDataset shards made by another tool) are scanned when the feed starts:
members are grouped into samples by key as WebDataset does (the name up to the first dot of its
file name), the image is the member with an image extension, the label comes from ``.cls`` (a
class index) or ``.json`` (a class index, a vector, or an object with ``"label"``). Remote tars
are read whole for that once; ``zerofeed pack`` a folder of them to skip the scan.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from io import BytesIO
from pathlib import Path
from typing import IO, Any

import numpy as np

from zerofeed.common.errors import BadSampleError, ManifestError
from zerofeed.common.locations import is_url, member_path
from zerofeed.common.manifest import IMAGE_EXTENSIONS, Manifest, load_manifest

__all__ = [
    "CLASSES_NAME",
    "INDEX_NAME",
    "ShardWriter",
    "is_shard_source",
    "load_shards",
    "scan_tar",
]

log = logging.getLogger("zerofeed.consumer")

INDEX_NAME = "index.csv"
CLASSES_NAME = "classes.json"
_KEY = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # webdataset's base_plus_ext
_LABEL_BYTES = 1 << 20


def is_shard_source(path: Path) -> bool:
    """Whether a local ``path`` is tar shards: one ``.tar``, or a folder holding ``.tar`` files
    and either an ``index.csv`` or no subfolders (a class-folder data set has subfolders)."""
    if path.is_file():
        return path.suffix == ".tar"
    if not path.is_dir():
        return False
    entries = list(os.scandir(path))
    if not any(e.name.endswith(".tar") and e.is_file() for e in entries):
        return False
    return (path / INDEX_NAME).is_file() or not any(e.is_dir() for e in entries)


def load_shards(location: str) -> Manifest:
    """The samples of tar shards at ``location``: a local folder or ``.tar`` (absolute path),
    or an ``s3://``/``http(s)://`` folder URL ending in ``/`` or one ``.tar`` URL."""
    if location.endswith(".tar"):
        return _scan_manifest([location], location)
    if is_url(location):
        from zerofeed.common.storage import ObjectStores

        stores = ObjectStores()
        try:
            stores.size(location + INDEX_NAME)
        except BadSampleError as exc:
            if exc.kind != "missing":
                raise ManifestError(f"cannot read {location}{INDEX_NAME}: {exc.reason}") from exc
            tars = [url for url, _ in _listing(stores, location) if url.endswith(".tar")]
            return _scan_manifest(tars, location)
        manifest = load_manifest(location + INDEX_NAME)
        return _with_class_names(manifest, _remote_class_names(stores, location), location)
    folder = Path(location)
    if (folder / INDEX_NAME).is_file():
        manifest = load_manifest(folder / INDEX_NAME)
        names_file = folder / CLASSES_NAME
        names = json.loads(names_file.read_text()) if names_file.is_file() else None
        return _with_class_names(manifest, names, location)
    tars = sorted(str(folder / e.name) for e in os.scandir(folder) if e.name.endswith(".tar"))
    return _scan_manifest(tars, location)


@dataclass
class _Sample:
    key: str
    image: tuple[int, int] | None = None  # offset, size of the image member's data
    label: Any = None


def scan_tar(stream: IO[bytes], where: str) -> Iterator[tuple[str, int, int, Any]]:
    """``(key, data offset, size, label)`` of every sample of a tar read front to back.

    ``label`` is ``None``, an ``int`` or a list of numbers. Keys without an image member are
    skipped with a warning; a tar that cannot be read is a :class:`ManifestError`.
    """
    current: _Sample | None = None
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for info in archive:
                if not info.isfile():
                    continue
                match = _KEY.match(info.name)
                if match is None:
                    continue
                key, extension = match.group(1), match.group(2).lower()
                if current is None or current.key != key:
                    if current is not None:
                        yield from _finished(current, where)
                    current = _Sample(key)
                if "." + extension.rsplit(".", 1)[-1] in IMAGE_EXTENSIONS:
                    if current.image is None:  # the first image is the sample (a mask may follow)
                        current.image = (info.offset_data, info.size)
                elif extension in ("cls", "json") and info.size <= _LABEL_BYTES:
                    member = archive.extractfile(info)
                    if member is not None:
                        current.label = _label(extension, member.read(), f"{where}: {info.name}")
    except tarfile.TarError as exc:
        raise ManifestError(f"{where} is not a readable tar archive: {exc}") from exc
    if current is not None:
        yield from _finished(current, where)


def _finished(sample: _Sample, where: str) -> Iterator[tuple[str, int, int, Any]]:
    if sample.image is None:
        log.warning("%s: sample %r has no image member; it is left out", where, sample.key)
        return
    yield sample.key, sample.image[0], sample.image[1], sample.label


def _label(extension: str, data: bytes, where: str) -> Any:
    try:
        text = data.decode("utf-8").strip()
        value = int(text) if extension == "cls" else json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"{where}: the label cannot be read ({exc})") from exc
    if isinstance(value, dict):
        value = value.get("label", value.get("cls"))
    if value is None or (isinstance(value, int | list) and not isinstance(value, bool)):
        return value
    raise ManifestError(
        f"{where}: label {value!r} is not a class index, a list of numbers or an object with "
        '"label"'
    )


def _scan_manifest(tars: list[str], location: str) -> Manifest:
    if not tars:
        raise ManifestError(f"{location} holds no .tar shards and no {INDEX_NAME}")
    started = time.perf_counter()
    pairs: list[tuple[str, object]] = []
    for tar in tars:
        with _open_tar(tar) as stream:
            for _key, offset, size, label in scan_tar(stream, tar):
                pairs.append((member_path(tar, offset, size), label))
    if not pairs:
        raise ManifestError(f"the shards at {location} hold no images")
    log.info(
        "indexed %d samples in %d tar shard(s) at %s in %.1f s; `zerofeed pack` writes an %s "
        "that skips this",
        len(pairs),
        len(tars),
        location,
        time.perf_counter() - started,
        INDEX_NAME,
    )
    return load_manifest(pairs)


@contextmanager
def _open_tar(tar: str) -> Iterator[IO[bytes]]:
    """A tar to scan: a local file, or a remote one read whole (once, at feed start)."""
    if is_url(tar):
        from zerofeed.common.storage import ObjectStores

        try:
            yield BytesIO(ObjectStores().read(tar))
        except BadSampleError as exc:
            raise ManifestError(f"cannot read the shard {tar}: {exc.reason}") from exc
        return
    try:
        stream = open(tar, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ManifestError(f"cannot read the shard {tar}: {exc}") from exc
    with stream:
        yield stream


def _listing(stores: Any, location: str) -> list[tuple[str, int]]:
    try:
        return list(stores.list(location))
    except BadSampleError as exc:
        raise ManifestError(f"cannot list {location}: {exc.reason}") from exc


def _remote_class_names(stores: Any, location: str) -> list[str] | None:
    try:
        return list(json.loads(stores.read(location + CLASSES_NAME)))
    except BadSampleError as exc:
        if exc.kind == "missing":
            return None
        raise ManifestError(f"cannot read {location}{CLASSES_NAME}: {exc.reason}") from exc


def _with_class_names(manifest: Manifest, names: list[str] | None, where: str) -> Manifest:
    if names is None:
        return manifest
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ManifestError(f"{where}{CLASSES_NAME} must be a JSON list of class names")
    return replace(manifest, class_names=tuple(names))


# --------------------------------------------------------------------------- writing


@dataclass
class _Open:
    name: str
    path: Path
    archive: tarfile.TarFile
    samples: int = 0


@dataclass
class ShardWriter:
    """Writes samples into ``shard-NNNNNN.tar`` files of at most ``shard_size`` bytes (a sample
    larger than that gets a shard of its own) and, on :meth:`finish`, their ``index.csv``.

    ``out`` is a local folder or an ``s3://`` folder URL; remote shards are written to a local
    temporary file, then uploaded, one at a time. The index is written last, so a pack that
    stops half way leaves no index that names missing shards.
    """

    out: str
    shard_size: int
    label_kind: str = "none"
    class_names: tuple[str, ...] | None = None
    rows: list[str] = field(default_factory=list)
    shards: list[str] = field(default_factory=list)
    _open: _Open | None = None
    _scratch: tempfile.TemporaryDirectory[str] | None = None

    def __post_init__(self) -> None:
        if is_url(self.out):
            if not self.out.startswith("s3://"):
                raise ManifestError(f"cannot write to {self.out}: shards go to a folder or s3://")
            self.out = self.out if self.out.endswith("/") else self.out + "/"
            self._scratch = tempfile.TemporaryDirectory(prefix="zerofeed-pack-")
        else:
            Path(self.out).mkdir(parents=True, exist_ok=True)
            # An index left by an earlier pack would name bytes this one overwrites.
            (Path(self.out) / INDEX_NAME).unlink(missing_ok=True)

    def add(self, key: str, extension: str, data: bytes, label: Any) -> str:
        """Add one sample; returns its index path (``shard-NNNNNN.tar#OFFSET+SIZE``)."""
        shard = self._shard_for(len(data))
        offset = _append(shard.archive, f"{key}{extension}", data)
        if self.label_kind == "class":
            _append(shard.archive, f"{key}.cls", str(int(label)).encode())
        elif self.label_kind == "vector":
            _append(shard.archive, f"{key}.json", json.dumps([float(v) for v in label]).encode())
        shard.samples += 1
        path = member_path(shard.name, offset, len(data))
        cells = [path, *_label_cells(self.label_kind, label)]
        self.rows.append(",".join(cells))
        return path

    def finish(self) -> None:
        """Close the last shard and write ``index.csv`` (and ``classes.json``)."""
        self._close_shard()
        width = len(self.rows[0].split(",")) - 1 if self.rows else 0
        header = ["path", *(["label"] if width == 1 else [f"label{i}" for i in range(width)])]
        self._write_file(INDEX_NAME, "\n".join([",".join(header), *self.rows]) + "\n")
        if self.class_names is not None:
            self._write_file(CLASSES_NAME, json.dumps(list(self.class_names)))
        if self._scratch is not None:
            self._scratch.cleanup()

    def _shard_for(self, size: int) -> _Open:
        shard = self._open
        if shard is not None and shard.samples and shard.archive.offset + size > self.shard_size:
            self._close_shard()
            shard = None
        if shard is None:
            name = f"shard-{len(self.shards):06d}.tar"
            folder = Path(self._scratch.name) if self._scratch is not None else Path(self.out)
            path = folder / name
            archive = tarfile.open(path, "w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115
            shard = self._open = _Open(name, path, archive)
            self.shards.append(name)
        return shard

    def _close_shard(self) -> None:
        shard, self._open = self._open, None
        if shard is None:
            return
        shard.archive.close()
        if self._scratch is not None:
            from zerofeed.common.storage import ObjectStores

            ObjectStores().write(self.out + shard.name, shard.path)
            shard.path.unlink()

    def _write_file(self, name: str, text: str) -> None:
        if self._scratch is not None:
            from zerofeed.common.storage import ObjectStores

            ObjectStores().write(self.out + name, text.encode())
        else:
            (Path(self.out) / name).write_text(text)


def _append(archive: tarfile.TarFile, name: str, data: bytes) -> int:
    """Add a member; returns the offset of its data in the tar."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o444
    archive.addfile(info, BytesIO(data))
    blocks = -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    return archive.offset - blocks


def _label_cells(kind: str, label: Any) -> list[str]:
    if kind == "class":
        return [str(int(label))]
    if kind == "vector":
        return [repr(float(v)) for v in np.asarray(label, dtype=np.float32).tolist()]
    return []

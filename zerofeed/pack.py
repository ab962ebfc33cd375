"""``zerofeed pack SOURCE OUT``: write a data set as WebDataset-compatible tar shards plus an index.

``SOURCE`` is anything a feed reads (a CSV, a class-folder directory, a manifest URL, existing
shards); ``OUT`` is a local folder or an ``s3://bucket/prefix/`` URL. The images' bytes are
copied as they are (nothing is decoded or re-encoded), in manifest order: the feed shuffles
samples across shards itself, every epoch. See :mod:`zerofeed.common.shards` for the layout.
"""

from __future__ import annotations

import argparse
import logging
import posixpath
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from zerofeed.common.errors import BadSampleError, ManifestError
from zerofeed.common.locations import REMOTE_PREFIXES, AllowList, parse_member
from zerofeed.common.manifest import Manifest, load_manifest
from zerofeed.common.shards import ShardWriter
from zerofeed.common.sizes import size_argument
from zerofeed.producer.paths import SampleLocator
from zerofeed.producer.reader import SampleReader

__all__ = ["PackSummary", "main", "pack"]

log = logging.getLogger("zerofeed.pack")


@dataclass(frozen=True)
class PackSummary:
    """What :func:`pack` wrote."""

    samples: int
    shards: int
    bytes: int
    seconds: float


def pack(
    source: str | Manifest,
    out: str,
    *,
    shard_size: int = 256 * 10**6,
    on_progress: Callable[[int, int], None] | None = None,
) -> PackSummary:
    """Write ``source``'s samples as tar shards of at most ``shard_size`` bytes, plus
    ``index.csv`` (and ``classes.json``), to the folder or ``s3://`` URL ``out``.

    Raises:
        ManifestError: the source cannot be read, or one of its images cannot (the message names
            it: a pack copies every sample, so a missing one is an error, not a skip).
    """
    started = time.perf_counter()
    manifest = source if isinstance(source, Manifest) else load_manifest(source)
    writer = ShardWriter(
        out, shard_size, label_kind=manifest.label_kind, class_names=manifest.class_names
    )
    # Read as a local producer would (confined to the manifest's root when it has one), with
    # leave to read any store: the user named this source.
    reader = SampleReader(
        locator=SampleLocator(manifest.producer_root), allow=AllowList(REMOTE_PREFIXES)
    )
    written = 0
    for row, path in enumerate(manifest.producer_paths):
        try:
            data = reader.read(path)
        except BadSampleError as exc:
            raise ManifestError(f"cannot pack {path}: {exc.kind}: {exc.reason}") from exc
        label = None if manifest.labels is None else manifest.labels[row]
        writer.add(f"{row:09d}", _extension(path, data), data, label)
        written += len(data)
        if on_progress is not None:
            on_progress(row + 1, len(manifest))
    writer.finish()
    return PackSummary(len(manifest), len(writer.shards), written, time.perf_counter() - started)


_MAGIC = ((b"\x89PNG", ".png"), (b"GIF8", ".gif"), (b"BM", ".bmp"), (b"RIFF", ".webp"))


def _extension(path: str, data: bytes) -> str:
    """The member's extension: the file's own, or (a member of another shard, whose name the
    index does not keep) the format its first bytes say."""
    extension = "" if parse_member(path) else posixpath.splitext(path)[1].lower()
    if extension:
        return extension
    return next((ext for magic, ext in _MAGIC if data.startswith(magic)), ".jpg")


def main(argv: Sequence[str] | None = None) -> int:
    """``zerofeed pack``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="zerofeed pack",
        description="Write a data set as WebDataset-compatible tar shards plus an index.csv "
        "of byte offsets, to a folder or an s3:// URL.",
    )
    parser.add_argument("source", help="a CSV manifest, a class-folder directory, or a URL")
    parser.add_argument("out", help="the folder or s3://bucket/prefix/ to write the shards to")
    parser.add_argument(
        "--shard-size",
        type=size_argument,
        default="256MB",
        help="largest shard, e.g. 256MB or 1GiB (default 256MB)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        summary = pack(args.source, args.out, shard_size=args.shard_size)
    except ManifestError as exc:
        sys.stderr.write(f"zerofeed pack: {exc}\n")
        return 1
    sys.stdout.write(
        f"packed {summary.samples} samples ({summary.bytes / 1e6:.1f} MB) into "
        f"{summary.shards} shard(s) at {args.out} in {summary.seconds:.1f} s\n"
    )
    return 0

"""The zerofeed loop row with the same images read from elsewhere: tar shards on local disk, moto's
S3 server and nginx on loopback (started in the row's process, stopped when it ends).

Shards are packed once per data set (``SET/shards-N/``, 64 MB each, reused by later runs); the S3
rows upload what they read to a fresh moto server first (not timed: ``setup_s``). moto is a Python
server on the same cores as the producers, and reads a whole object to serve a range of it: the S3
rows show the feed against a slow store, not what S3 gives (``docs/storage.md``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.config import RunConfig
from bench.pipelines.feed import run_feed_iterate
from bench.servers import MotoServer, Nginx

__all__ = ["SHARD_BYTES", "run_storage"]

SHARD_BYTES = 64 * 10**6
S3_SHARD_BYTES = 8 * 10**6  # moto copies the whole object for every ranged GET
_BUCKET = "bench"


def run_storage(cfg: RunConfig, *, where: str) -> dict[str, object]:
    """The loop row on ``where``: ``shards``, ``s3``, ``s3_shards``, ``http`` or ``http_shards``."""
    manifest = cfg.manifest_path
    work = Path(tempfile.mkdtemp(prefix="zerofeed-bench-storage-"))
    try:
        if where == "shards":
            return run_feed_iterate(cfg, source=str(_shards(manifest, SHARD_BYTES)))
        if where.startswith("http"):
            with _nginx(manifest.parent, work) as nginx:
                source = (
                    f"{nginx.url}/{_shards(manifest, SHARD_BYTES).name}/"
                    if where == "http_shards"
                    else f"{nginx.url}/{manifest.name}"
                )
                return run_feed_iterate(cfg, source=source, requests=nginx.requests)
        with _moto() as moto:
            if where == "s3_shards":
                moto.upload(_BUCKET, _shards(manifest, S3_SHARD_BYTES), "shards/")
                source = f"s3://{_BUCKET}/shards/"
            else:
                moto.upload(_BUCKET, _images_only(manifest, work / "files"))
                source = f"s3://{_BUCKET}/{manifest.name}"
            return run_feed_iterate(cfg, source=source)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _shards(manifest: Path, shard_bytes: int) -> Path:
    """``manifest``'s images packed into tars next to it (once; reused while complete)."""
    from zerofeed.common.shards import INDEX_NAME
    from zerofeed.pack import pack

    folder = manifest.parent / f"shards-{manifest.stem}-{shard_bytes // 10**6}MB"
    if not (folder / INDEX_NAME).is_file():
        shutil.rmtree(folder, ignore_errors=True)
        pack(str(manifest), str(folder), shard_size=shard_bytes)
    return folder


def _images_only(manifest: Path, folder: Path) -> Path:
    """A folder of links to just the manifest and the images it names (what S3 is sent)."""
    text = manifest.read_text()
    for line in text.splitlines()[1:]:
        relative = line.split(",", 1)[0]
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(manifest.parent / relative, folder / relative)
    (folder / manifest.name).write_text(text)
    return folder


@contextmanager
def _nginx(root: Path, work: Path) -> Iterator[Nginx]:
    server = Nginx(root, work / "nginx")
    try:
        yield server
    finally:
        server.close()


@contextmanager
def _moto() -> Iterator[MotoServer]:
    server = MotoServer()
    saved = {name: os.environ.get(name) for name in server.credentials}
    os.environ.update(server.credentials)  # the row's process and its local producers read them
    try:
        yield server
    finally:
        server.close()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

"""Where the images live: local files, tar shards, an S3 server and nginx, same work, same run.

    .venv/bin/python -m bench.storage                  # ~4 min on 2 cores
    .venv/bin/python -m bench.storage --images 640 --rounds 1

Rows (the bench's work: decode, RRC 35-100 %, resize 224, flip, batch 64; 2 local producers):

- ``files``: the CSV of local JPEGs (the fastest path, for reference);
- ``shards``: the same images packed by ``zerofeed pack`` into 8 MB tars on local disk (moto
  reads a whole object to serve a range of it, so bigger shards measure moto, not zerofeed);
- ``s3 files`` / ``s3 shards``: the same, in moto's S3 server on loopback;
- ``http files`` / ``http shards``: the same, served by nginx on loopback.

Each row is a fresh feed: one warm-up epoch, then one timed epoch; rows run in turn,
``--rounds`` times; medians. Requests per image come from nginx's access log (the S3 rows make
one ranged GET per image by construction). moto is a Python server on the same two cores as the
producers, so the S3 rows measure a slow store sharing the CPU: a floor, not what S3 gives.
Results: ``bench/results/storage.md`` and ``storage.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.config import AUGMENT, BATCH_SIZE, IMAGE_SIZE, MAX_QUEUE_SIZE, machine_cores
from bench.dataset import ensure_dataset
from bench.servers import MotoServer, Nginx

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def timed_epoch(source: str, producers: int) -> dict[str, float]:
    """A warm-up epoch, then a timed one: images/s and the consumer's CPU per batch."""
    from zerofeed.consumer import FeedSequence

    with FeedSequence(
        source,
        batch_size=BATCH_SIZE,
        image_size=IMAGE_SIZE,
        augment=AUGMENT,
        seed=0,
        local_producers=producers,
        max_queue_size=MAX_QUEUE_SIZE,
        timeout=300,
    ) as seq:
        for i in range(len(seq)):
            seq[i]
        seq.on_epoch_end()
        start, cpu = time.perf_counter(), time.process_time()
        images = sum(len(seq[i][0]) for i in range(len(seq)))
        wall = time.perf_counter() - start
        if seq.stats.skipped:
            raise RuntimeError(f"{source}: {len(seq.stats.skipped)} samples skipped")
        return {
            "images_per_s": images / wall,
            "consumer_cpu_ms_per_batch": 1000 * (time.process_time() - cpu) / len(seq),
            "images": images,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storage", description=__doc__)
    parser.add_argument("--images", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    from zerofeed.pack import pack

    data = ensure_dataset(args.images)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="zerofeed-bench-storage-"))
    moto = nginx = None
    try:
        www = work / "www"
        _copy_data_set(data.manifest, www / "files")
        pack(str(data.manifest), str(www / "shards"), shard_size=8 * 10**6)
        nginx = Nginx(www, work / "nginx")
        moto = MotoServer()
        for name, value in moto.credentials.items():
            os.environ[name] = value
        moto.upload("bench", www)
        sources = {
            "files": str(data.manifest),
            "shards": str(www / "shards"),
            "s3 files": f"s3://bench/files/{data.manifest.name}",
            "s3 shards": "s3://bench/shards/",
            "http files": f"{nginx.url}/files/{data.manifest.name}",
            "http shards": f"{nginx.url}/shards/",
        }
        runs: dict[str, list[dict[str, float]]] = {row: [] for row in sources}
        for round_ in range(args.rounds):
            print(f"round {round_ + 1} of {args.rounds}", flush=True)
            for row, source in sources.items():
                before = nginx.requests()
                result = timed_epoch(source, args.producers)
                if row.startswith("http"):
                    result["requests_per_image"] = (nginx.requests() - before) / (2 * args.images)
                runs[row].append(result)
                print(f"  {row:>12}: {result['images_per_s']:.0f} images/s", flush=True)
    finally:
        if moto is not None:
            moto.close()
        if nginx is not None:
            nginx.close()
        shutil.rmtree(work, ignore_errors=True)
    summary = {row: _median(results) for row, results in runs.items()}
    report = {
        "machine": f"{platform.machine()}, {machine_cores()} cores",
        "images": args.images,
        "rounds": args.rounds,
        "minutes": (time.perf_counter() - started) / 60,
        "rows": summary,
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "storage.json").write_text(json.dumps(report, indent=2))
    (args.out / "storage.md").write_text(_markdown(report))
    print(_markdown(report))
    return 0


def _copy_data_set(manifest: Path, folder: Path) -> None:
    """The manifest and just the images it names, at the same relative paths."""
    folder.mkdir(parents=True)
    text = manifest.read_text()
    for line in text.splitlines()[1:]:
        relative = line.split(",", 1)[0]
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(manifest.parent / relative, folder / relative)
    (folder / manifest.name).write_text(text)


def _median(results: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in results) for key in results[0]}


def _markdown(report: dict[str, Any]) -> str:
    rows = report["rows"]
    base = rows["files"]["images_per_s"]
    lines = [
        "# Where the images live",
        "",
        f"{report['machine']}; {report['images']} JPEGs; batch {BATCH_SIZE}, "
        f"{IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}, the bench's augmentation; 2 local producers; median "
        f"of {report['rounds']} rounds ({report['minutes']:.1f} min). "
        "`.venv/bin/python -m bench.storage`",
        "",
        "| source | images/s | vs local files | requests per image | consumer CPU ms/batch |",
        "|---|---|---|---|---|",
    ]
    for row, result in rows.items():
        requests = result.get("requests_per_image")
        per_image = (
            f"{requests:.3f}"
            if requests is not None
            else (
                "1 (ranged GET)"
                if "shards" in row and row.startswith("s3")
                else "1 (GET)"
                if row.startswith("s3")
                else "0 (local disk)"
            )
        )
        lines.append(
            f"| {row} | {result['images_per_s']:.0f} | {result['images_per_s'] / base:.2f}x | "
            f"{per_image} | {result['consumer_cpu_ms_per_batch']:.1f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())

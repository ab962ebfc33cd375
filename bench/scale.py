"""Data-parallel scale: 1, 2 and 3 trainer ranks sharing the same producers, on this machine.

    .venv/bin/python -m bench.scale                 # ~2 min on 2 cores
    .venv/bin/python -m bench.scale --ranks 1 2 --rounds 1 --images 640

Each configuration starts R rank processes (each a feed of rank r of R, batch 64 per rank,
224x224, the bench's augmentation, bound to its own TCP port) and one ``zerofeed producer`` with
``--workers`` workers connected to all of them. Each rank reads one warm-up epoch, then one
timed epoch. Reported per configuration: aggregate images/s (the images all ranks received while
every rank was in its timed epoch, over that window) and each rank's consumer CPU per batch.
Configurations run in turn, ``--rounds`` times; medians. Results: ``bench/results/scale.md``
and ``scale.json``.

Every rank here reads over TCP (producers on other nodes do), so the 1-rank figure is below
``./dev bench``'s zerofeed row, whose local producers hand batches over in shared memory.
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.config import AUGMENT, BATCH_SIZE, IMAGE_SIZE, MAX_QUEUE_SIZE, machine_cores
from bench.dataset import ensure_dataset

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def run_rank(settings: dict[str, Any]) -> dict[str, Any]:
    """One rank: a warm-up epoch, then a timed one; what it measured."""
    from zerofeed.consumer import DataConfig, Feed, ServingConfig

    feed = Feed(
        settings["manifest"],
        data=DataConfig(
            batch_size=BATCH_SIZE,
            image_size=IMAGE_SIZE,
            augment=AUGMENT,
            seed=0,
            rank=settings["rank"],
            world_size=settings["world_size"],
        ),
        serving=ServingConfig(
            bind=settings["bind"], local_producers=0, max_queue_size=MAX_QUEUE_SIZE, timeout=120
        ),
    )
    with feed:
        for batch in range(len(feed)):
            feed.get(0, batch)
        start, cpu = time.time(), time.process_time()
        arrivals = []  # (time, images) of every batch of the timed epoch
        for batch in range(len(feed)):
            arrivals.append((time.time(), len(feed.get(1, batch).rows)))
        return {
            "arrivals": arrivals,
            "start": start,
            "cpu_ms_per_batch": 1000 * (time.process_time() - cpu) / len(feed),
        }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_configuration(manifest: Path, ranks: int, workers: int) -> dict[str, Any]:
    """R rank processes and one producer serving them all."""
    endpoints = [f"tcp://127.0.0.1:{free_port()}" for _ in range(ranks)]
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.scale",
                "--rank-process",
                json.dumps(
                    {"manifest": str(manifest), "rank": r, "world_size": ranks, "bind": endpoint}
                ),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for r, endpoint in enumerate(endpoints)
    ]
    connect = [arg for endpoint in endpoints for arg in ("--connect", endpoint)]
    producer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zerofeed",
            "producer",
            *connect,
            "--workers",
            str(workers),
            "--data-root",
            str(manifest.parent),
            "--log-level",
            "WARNING",
        ],
    )
    try:
        results = []
        for process in processes:
            out, _ = process.communicate(timeout=600)
            if process.returncode != 0:
                raise RuntimeError(f"a rank exited {process.returncode}")
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        producer.send_signal(signal.SIGTERM)
        producer.wait(timeout=30)
        for process in processes:
            if process.poll() is None:
                process.kill()
    # The window in which every rank was in its timed epoch: its images over its length.
    opened = max(r["start"] for r in results)
    closed = min(r["arrivals"][-1][0] for r in results)
    images = sum(n for r in results for t, n in r["arrivals"] if opened < t <= closed)
    return {
        "images_per_s": images / (closed - opened),
        "window_s": closed - opened,
        "cpu_ms_per_batch": [r["cpu_ms_per_batch"] for r in results],
    }


def report(pooled: dict[int, list[dict[str, Any]]], *, images: int, workers: int) -> str:
    one = statistics.median(r["images_per_s"] for r in pooled[min(pooled)])
    lines = [
        "# Data-parallel scale: ranks sharing one producer pool",
        "",
        f"{platform.machine()}, {machine_cores()} cores; {images} images (bench set), batch "
        f"{BATCH_SIZE} per rank, {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}; one `zerofeed producer` with "
        f"{workers} workers connected to every rank over TCP; median of "
        f"{len(pooled[min(pooled)])} rounds. Command: `python -m bench.scale`.",
        "",
        "| ranks | aggregate images/s | runs | vs 1 rank | consumer CPU ms per batch, per rank |",
        "|---|---|---|---|---|",
    ]
    for ranks, runs in sorted(pooled.items()):
        rate = statistics.median(r["images_per_s"] for r in runs)
        cpu = [statistics.median(r["cpu_ms_per_batch"][i] for r in runs) for i in range(ranks)]
        rates = ", ".join(f"{r['images_per_s']:.0f}" for r in runs)
        cpus = ", ".join(f"{c:.2f}" for c in cpu)
        lines.append(f"| {ranks} | **{rate:.0f}** | {rates} | {rate / one:.2f}x | {cpus} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=machine_cores())
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--rank-process", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rank_process:
        print(json.dumps(run_rank(json.loads(args.rank_process))), flush=True)
        return
    data = ensure_dataset(args.images)
    pooled: dict[int, list[dict[str, Any]]] = {}
    for round_number in range(args.rounds):
        for ranks in args.ranks:
            result = run_configuration(data.manifest, ranks, args.workers)
            pooled.setdefault(ranks, []).append(result)
            print(
                f"round {round_number + 1}: {ranks} rank(s): {result['images_per_s']:.0f} "
                f"images/s; consumer CPU ms/batch {result['cpu_ms_per_batch']}",
                flush=True,
            )
    text = report(pooled, images=data.images, workers=args.workers)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.md").write_text(text)
    (args.out / "scale.json").write_text(json.dumps({str(k): v for k, v in pooled.items()}))
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])

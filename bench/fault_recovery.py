"""How long a SIGKILLed producer costs an epoch, and what it loses (nothing, if all is well).

    .venv/bin/python bench/fault_recovery.py [--runs 3] [--images 2400]

Three `zerofeed producer` processes (one worker each) feed a consumer with the default lease
timeout (5 s) and heartbeat (1 s). Each run reads one clean epoch as the baseline, then an epoch in
which one producer worker is SIGKILLed a third of the way in. It reports, per run, the epoch
times, the time from the kill to the epoch's completion, and samples lost and duplicated.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

from zerofeed.consumer import FeedSequence


def make_dataset(root: Path, count: int) -> Path:
    """``count`` (< 4096) noisy 320x240 JPEGs whose top-left block encodes the row, 4 bits a channel."""
    rng = np.random.default_rng(0)
    lines = ["path,label"]
    for row in range(count):
        pixels = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
        pixels[:64, :64] = [(row >> shift) % 16 * 16 + 8 for shift in (0, 4, 8)]
        Image.fromarray(pixels).save(root / f"{row}.jpg", quality=90)
        lines.append(f"{row}.jpg,{row % 10}")
    manifest = root / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def rows_of(images: np.ndarray) -> list[int]:
    nibbles = images[:, 2:6, 2:6, :].astype(float).mean(axis=(1, 2)) // 16
    return [int(r) + 16 * int(g) + 256 * int(b) for r, g, b in nibbles]


def read_epoch(
    seq: FeedSequence, kill_at: int | None, victim: int | None
) -> tuple[float, float, list[int]]:
    started = time.perf_counter()
    killed_at = started
    rows: list[int] = []
    for index in range(len(seq)):
        if index == kill_at and victim is not None:
            os.kill(victim, signal.SIGKILL)
            killed_at = time.perf_counter()
        rows += rows_of(seq[index][0])
    finished = time.perf_counter()
    return finished - started, finished - killed_at, rows


def a_worker_of(producer: subprocess.Popen) -> int:
    children = psutil.Process(producer.pid).children()
    return next(c.pid for c in children if "spawn_main" in " ".join(c.cmdline()))


def one_run(manifest: Path, seed: int) -> dict[str, float]:
    with FeedSequence(
        manifest,
        batch_size=32,
        image_size=(128, 128),
        seed=seed,
        bind="tcp://127.0.0.1:0",
        local_producers=0,
        timeout=120,
    ) as seq:
        producers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "zerofeed",
                    "producer",
                    "--connect",
                    seq.endpoint,
                    "--workers",
                    "1",
                    "--data-root",
                    str(manifest.parent),
                    "--log-level",
                    "ERROR",
                ]
            )
            for _ in range(3)
        ]
        try:
            while seq.stats.producers_connected < 3:
                time.sleep(0.05)
            read_epoch(seq, None, None)  # warm-up
            seq.on_epoch_end()
            clean, _, _ = read_epoch(seq, None, None)
            seq.on_epoch_end()
            total, after_kill, rows = read_epoch(seq, len(seq) // 3, a_worker_of(producers[0]))
            counts = Counter(rows)
            expected = Counter(range(len(seq.manifest)))
            return {
                "clean_epoch_s": clean,
                "killed_epoch_s": total,
                "kill_to_completion_s": after_kill,
                "lost": sum((expected - counts).values()),
                "duplicated": sum((counts - expected).values()),
                "reissued": seq.stats.tasks_reissued,
            }
        finally:
            for producer in producers:
                producer.send_signal(signal.SIGTERM)
            for producer in producers:
                producer.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--images", type=int, default=2400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zerofeed-faults-") as folder:
        manifest = make_dataset(Path(folder), args.images)
        results = [one_run(manifest, seed) for seed in range(args.runs)]
    for number, result in enumerate(results, 1):
        print(
            f"run {number}: "
            + ", ".join(
                f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()
            )
        )
    median = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(
        f"median: clean epoch {median['clean_epoch_s']:.2f} s, epoch with a SIGKILL "
        f"{median['killed_epoch_s']:.2f} s (+{median['killed_epoch_s'] - median['clean_epoch_s']:.2f} s), "
        f"kill to completion {median['kill_to_completion_s']:.2f} s; "
        f"lost {sum(r['lost'] for r in results)}, duplicated {sum(r['duplicated'] for r in results)} "
        f"over {len(results)} runs"
    )


if __name__ == "__main__":
    main()

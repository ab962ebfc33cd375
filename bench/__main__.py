"""``python -m bench``: make the data set, run every row in its own process, write the report.

See ``bench/README.md`` for what each row does and how the figures are taken.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import time
from pathlib import Path
from typing import Any

from bench.config import BATCH_SIZE, RunConfig, machine_cores
from bench.dataset import DATA_DIR, KINDS, DatasetInfo, ensure_dataset
from bench.report import write_outputs
from bench.rows import ROWS
from bench.runner import pool_rounds, run_row
from bench.targets import evaluate

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_PACE_MS = 64.0
"""``model_alone_paced``'s step when ``zerofeed_fit`` did not run first: 1,000 img/s."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    cores = machine_cores()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--set",
        dest="data_set",
        choices=KINDS,
        default="photos",
        help="the data set (bench/dataset.py): photos (default), large (2-4 MP JPEGs) or mixed "
        "(progressive, greyscale, 4:4:4, PNG, CMYK); results of the others go to "
        "bench/results/<set>/",
    )
    parser.add_argument(
        "--images", type=int, help="data set size (default 3000; 1000 for --set large)"
    )
    parser.add_argument(
        "--runs", type=int, default=1, help="timed epochs per row and round (default 1)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="run every row this many times, in turn (ABC ABC ...), and pool the timed epochs: "
        "drift of the machine's speed then weighs on every row alike (default 3)",
    )
    parser.add_argument(
        "--producers",
        type=_producers,
        default="auto",
        help=f'zerofeed local producers: a number, or "auto" (the default: {cores}, one per core, '
        f"and up to {2 * cores} while each added one raises images/s, as FeedSequence's default)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed epochs before the timed ones, in every row (default 1; the under-load "
        "figures use 3, for every row alike: pipelines that tune themselves settle first)",
    )
    parser.add_argument(
        "--workers", type=int, default=cores, help=f"PyDataset workers (default {cores})"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 320 images, 1 run")
    parser.add_argument("--seed", type=int, default=0, help="data set and augmentation seed")
    parser.add_argument(
        "--rows", nargs="+", choices=[r.key for r in ROWS], help="run only these rows"
    )
    parser.add_argument(
        "--load",
        type=int,
        default=0,
        help="busy-loop processes competing for the cores during every row, as a training "
        "box's other work does (default 0; issue 15's under-load figures use 1)",
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed per row")
    parser.add_argument("--out", type=Path, help="where results go (default bench/results/)")
    args = parser.parse_args(argv)
    if args.images is None:
        args.images = 1000 if args.data_set == "large" else 3000
    if args.out is None:
        args.out = RESULTS_DIR if args.data_set == "photos" else RESULTS_DIR / args.data_set
    if args.quick:
        args.images, args.runs, args.rounds = 320, 1, 1
    if args.runs < 1 or args.rounds < 1:
        parser.error("--runs and --rounds must be at least 1")
    return args


def _producers(value: str) -> int | str:
    """``--producers``: "auto" or a whole number >= 1."""
    if value == "auto":
        return value
    count = int(value)
    if count < 1:
        raise argparse.ArgumentTypeError(f'need "auto" or a number >= 1, got {value!r}')
    return count


def _describe(info: DatasetInfo) -> dict[str, Any]:
    described = dataclasses.asdict(info)
    described["manifest"] = str(info.manifest)
    return described


def _datasets(args: argparse.Namespace) -> tuple[DatasetInfo, DatasetInfo | None]:
    """The data set, and for the photos set the 4x one of the memory row."""
    data = ensure_dataset(args.images, seed=args.seed, kind=args.data_set)
    big = None
    if args.data_set == "photos":
        big = ensure_dataset(4 * args.images, seed=args.seed)
    for info in (data, big):
        if info is None:
            continue
        print(
            f"data: {info.images} images ({info.generated} drawn in {info.seconds:.0f} s), mean "
            f"{info.mean_bytes / 1000:.1f} KB, mean {info.mean_width:.0f}x{info.mean_height:.0f} px"
            f" -> {info.manifest}",
            flush=True,
        )
    return data, big


def run_rows(
    args: argparse.Namespace, data: DatasetInfo, big: DatasetInfo | None
) -> dict[str, Any]:
    """Each row in its own subprocess; the 4x row reads one epoch, without warm-up."""
    cfg = RunConfig(
        manifest=str(data.manifest),
        images=data.images,
        runs=args.runs,
        warmup=args.warmup,
        producers=args.producers,
        workers=args.workers,
        seed=args.seed,
    )
    big_cfg = big and dataclasses.replace(
        cfg, manifest=str(big.manifest), images=big.images, runs=1, warmup=0
    )
    rounds: dict[str, list[dict[str, Any]]] = {}
    pace_ms = DEFAULT_PACE_MS
    for round_number in range(args.rounds):
        if args.rounds > 1:
            print(f"round {round_number + 1} of {args.rounds}", flush=True)
        for row in ROWS:
            if args.rows and row.key not in args.rows and row.key != "baseline":
                continue
            if args.data_set not in row.sets:
                continue
            if row.kind in ("memory", "baseline") and round_number > 0:
                continue  # memory figures do not drift: once is enough
            started = time.perf_counter()
            row_cfg = big_cfg if row.kind == "memory" and big_cfg else cfg
            if row.key == "model_alone_paced":
                row_cfg = dataclasses.replace(row_cfg, pace_ms=pace_ms)
            if row_cfg.runs < row.min_runs and not args.quick:
                row_cfg = dataclasses.replace(row_cfg, runs=row.min_runs)
            result = run_row(
                row.key, row_cfg, log_dir=DATA_DIR / "logs", timeout=args.timeout, load=args.load
            )
            if row.key == "zerofeed_fit" and result.get("images_per_s"):
                # Its mean step: the first few are served from batches made ahead.
                pace_ms = 1000 * BATCH_SIZE / float(result["images_per_s"])  # type: ignore[arg-type]
            rounds.setdefault(row.key, []).append(result)
            rate = result.get("images_per_s")
            what = result.get("error") or (f"{rate:.0f} images/s" if rate else "done")
            other = result.get("other_cpu_s", 0.0)
            print(
                f"{row.key:>18}: {what} ({time.perf_counter() - started:.0f} s; "
                f"other jobs used {other:.0f} CPU s meanwhile)",
                flush=True,
            )
    return {key: pool_rounds(results) for key, results in rounds.items()}


def main(argv: list[str]) -> None:
    started = time.perf_counter()
    args = parse_args(argv)
    data, big = _datasets(args)
    rows = run_rows(args, data, big)
    cores = machine_cores()
    report = {
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": {
            "cores": cores,
            "description": f"{platform.processor() or platform.machine()}, Python "
            f"{platform.python_version()}",
        },
        "dataset": _describe(data),
        "dataset_4x": _describe(big) if big else None,
        "rows": rows,
        "targets": [
            t.to_dict() for t in evaluate(rows, cores, load=args.load, data_set=args.data_set)
        ],
        "total_seconds": time.perf_counter() - started,
    }
    print()
    print(write_outputs(report, args.out))
    print(f"wrote {args.out}/results.md, results.png, results.json")


if __name__ == "__main__":
    main(sys.argv[1:])

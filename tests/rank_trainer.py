"""One data-parallel trainer rank for the tests: a feed of rank ``--rank`` of ``--world-size``.

It binds ``--bind`` (producers the test starts connect to it), reads every batch of ``--epochs``
epochs with the engine (no Keras: the process starts fast), and appends one JSON line per batch
to ``--out``: the epoch, batch, manifest rows, a SHA-256 of each row's image, and the feed state
that resumes after it. With ``--resume`` it restores the last line's state first and goes on, as
a restarted rank does; ``--delay`` seconds per batch make it a slow rank.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from zerofeed.consumer import DataConfig, Feed, ServingConfig

AUGMENT = {"random_resized_crop": {"scale": [0.3, 1.0]}, "horizontal_flip": True}
# The feed settings of the framework workers (tests/mwms_worker.py, tests/ddp_worker.py).
FRAMEWORK_FEED: dict[str, Any] = {
    "batch_size": 4,
    "image_size": (16, 16),
    "seed": 5,
    "local_producers": 0,
    "timeout": 60,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--bind", required=True)
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--world-size", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    feed = Feed(
        args.manifest,
        data=DataConfig(
            batch_size=args.batch_size,
            image_size=(32, 32),
            augment=AUGMENT,
            seed=11,
            rank=args.rank,
            world_size=args.world_size,
        ),
        serving=ServingConfig(bind=args.bind, local_producers=0, timeout=60, max_queue_size=4),
    )
    epoch, batch = 0, 0
    if args.resume:
        last = args.out.read_text().splitlines()[-1]
        epoch, batch = feed.restore(json.loads(last)["state"])
    with feed, args.out.open("a") as out:
        while epoch < args.epochs:
            got = feed.get(epoch, batch)
            record = {
                "epoch": epoch,
                "batch": batch,
                "rows": got.rows.tolist(),
                "images": [hashlib.sha256(image.tobytes()).hexdigest() for image in got.images],
                "state": feed.state(),
                "time": time.time(),
            }
            out.write(json.dumps(record) + "\n")
            out.flush()
            time.sleep(args.delay)  # the training step of a slow rank
            batch += 1
            if batch == len(feed):
                epoch, batch = epoch + 1, 0


if __name__ == "__main__":
    main()

"""Train a small CNN fed by remote zerofeed producers, and prove every sample came exactly once.

The trainer of docker-compose.yml (docs/deploy.md). It binds a TCP endpoint, starts no producer
of its own, and waits for `zerofeed producer` containers to connect. At the end it prints, per
epoch, how many samples were delivered exactly once (from the manifest rows of every batch
served, as the consumer received them) and the feed's counters.

    python examples/compose_train.py --csv /data/sample/train.csv --epochs 2

This script is the command-line boundary, so it reads its settings from the environment too:
TRAIN_CSV, TRAIN_EPOCHS, TRAIN_BATCH_SIZE, TRAIN_IMAGE_SIZE, TRAIN_SEED, TRAIN_STEP_DELAY,
ZEROFEED_BIND, ZEROFEED_RANK and ZEROFEED_WORLD_SIZE (one trainer of several sharing the
producers, docker-compose.ranks.yml; or any source zerofeed.consumer.rank_and_world_size reads),
and for CURVE both ZEROFEED_SERVER_SECRET_KEY (this trainer's .key_secret file)
and ZEROFEED_AUTHORIZED_KEYS (a folder of the producers' public .key files).
Exits 1 if any epoch missed or repeated a sample.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from zerofeed.consumer import FeedBatch, FeedSequence, rank_and_world_size

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_small_cnn import build_model


class AuditedFeed(FeedSequence):
    """A FeedSequence that records the manifest rows and producer of every batch it serves.

    Keyed by (epoch, batch), so a batch served twice (Keras reads the first ones once to learn
    shapes) is counted once, as the feed made it once.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.served: dict[tuple[int, int], tuple[np.ndarray, str]] = {}

    def on_batch(self, batch: FeedBatch) -> None:
        self.served[(batch.epoch, batch.batch)] = (batch.rows.copy(), batch.producer)


class Pace(keras.callbacks.Callback):
    """Per epoch: the most producer workers seen connected; optionally slows each step."""

    def __init__(self, feed: FeedSequence, step_delay: float) -> None:
        super().__init__()
        self.feed, self.step_delay = feed, step_delay
        self.workers: dict[int, int] = defaultdict(int)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        stats = self.feed.stats
        self.workers[stats.epoch] = max(self.workers[stats.epoch], stats.producers_connected)
        if self.step_delay:
            time.sleep(self.step_delay)


def audit(feed: AuditedFeed, workers: dict[int, int]) -> bool:
    """Print, per epoch, how many of this rank's samples were delivered exactly once; True if
    all were (with one rank, every sample of the manifest)."""
    recipe = feed.feed.recipe
    whose = f" of rank {recipe.rank} of {recipe.world_size}" if recipe.world_size > 1 else ""
    by_epoch: dict[int, list[tuple[np.ndarray, str]]] = defaultdict(list)
    for (epoch, _slot), served in sorted(feed.served.items()):
        by_epoch[epoch].append(served)
    all_ok = True
    for epoch, batches in sorted(by_epoch.items()):
        plan = recipe.plan(epoch)
        expected = np.concatenate([plan.batch(i) for i in range(len(plan))])
        counts = np.bincount(
            np.concatenate([rows for rows, _ in batches]), minlength=len(feed.manifest)
        )
        n = len(expected)
        once = int((counts[expected] == 1).sum())
        foreign = int((np.delete(counts, expected) > 0).sum())  # another rank's samples
        producers = Counter(name for _, name in batches)
        line = (
            f"epoch {epoch + 1}: {once} of {n} samples{whose} delivered exactly once "
            f"({len(batches)} batches from {len(producers)} producers, "
            f"up to {workers.get(epoch, 0)} producer workers connected)"
        )
        if once != n or foreign:
            all_ok = False
            line += (
                f"; MISSING {int((counts[expected] == 0).sum())}, REPEATED "
                f"{int((counts > 1).sum())}, OTHER RANKS' {foreign}"
            )
        print(line)
    return all_ok and len(by_epoch) > 0


def parse_args() -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=Path(env("TRAIN_CSV", "data/sample/train.csv")))
    parser.add_argument("--epochs", type=int, default=int(env("TRAIN_EPOCHS", "2")))
    parser.add_argument("--batch-size", type=int, default=int(env("TRAIN_BATCH_SIZE", "32")))
    parser.add_argument("--image-size", type=int, default=int(env("TRAIN_IMAGE_SIZE", "96")))
    parser.add_argument("--seed", type=int, default=int(env("TRAIN_SEED", "0")))
    parser.add_argument(
        "--step-delay",
        type=float,
        default=float(env("TRAIN_STEP_DELAY", "0")),
        help="seconds to sleep after each step: leaves time to scale producers mid-run",
    )
    parser.add_argument("--bind", default=env("ZEROFEED_BIND", "tcp://0.0.0.0:5555"))
    parser.add_argument("--server-secret-key", default=env("ZEROFEED_SERVER_SECRET_KEY"))
    parser.add_argument("--authorized-keys", default=env("ZEROFEED_AUTHORIZED_KEYS"))
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    size = (args.image_size, args.image_size)
    rank, world_size = rank_and_world_size()
    augment = {"random_resized_crop": {"scale": [0.6, 1.0]}, "horizontal_flip": True}
    with AuditedFeed(
        args.csv,
        batch_size=args.batch_size,
        image_size=size,
        augment=augment,
        seed=args.seed,
        bind=args.bind,
        rank=rank,
        world_size=world_size,
        local_producers=0,
        server_secret_key=args.server_secret_key,
        authorized_keys=args.authorized_keys,
    ) as train:
        curve = "CURVE on" if args.server_secret_key else "no CURVE"
        print(
            f"trainer: {len(train.manifest)} samples, {len(train)} batches per epoch, "
            f"waiting for producers on {train.endpoint} ({curve})",
            flush=True,
        )
        model = build_model(size, len(train.class_names or ()) or 1)
        model.compile(
            optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        pace = Pace(train, args.step_delay)
        model.fit(train, epochs=args.epochs, verbose=2, callbacks=[pace])
        ok = audit(train, pace.workers)
        s = train.stats
        print(
            f"stats: {s.images_delivered} images in {s.batches_delivered} batches; "
            f"{s.producers_connected} producer workers connected at the end; "
            f"{s.tasks_issued} tasks issued, {s.tasks_reissued} re-issued; "
            f"{s.producers_lost} producers lost; {s.messages_rejected} messages rejected; "
            f"{s.connections_refused} connections refused; waited {s.wait_seconds:.1f} s for data"
        )
    print("exactly once: OK" if ok else "exactly once: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Data-parallel training: several trainer ranks, each its own process and feed, share producers.

Every rank runs :mod:`tests.rank_trainer` (a real feed bound to its own TCP port); real
`zerofeed producer` processes connect to all of them with repeated ``--connect``. The checks:
each sample exactly once across the ranks per epoch, the same number of steps on every rank, the
global batches (rank slices of a step, together) equal to one trainer with a ``world_size`` times
larger batch, and that holds through a producer's SIGKILL, a slow rank, and a rank killed and
restarted from its saved state.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import wait_until
from tests.images import write_image

pytestmark = pytest.mark.usefixtures("no_leftover_processes")

EPOCHS = 2
BATCH = 4


def photo_dataset(root: Path, count: int) -> Path:
    """``count`` small JPEG photos (distinct pixels, so augmentation shows) and a CSV."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ["path,label"]
    for row in range(count):
        write_image(root / f"{row:03d}.jpg", size=(64, 48), seed=row)
        lines.append(f"{row:03d}.jpg,{row % 5}")
    manifest = root / "train.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Rank:
    """A `tests.rank_trainer` process and the records it wrote."""

    def __init__(
        self, manifest: Path, out: Path, *, rank: int, world_size: int, batch_size: int = BATCH
    ) -> None:
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.out = out
        self.command = [
            sys.executable,
            "-m",
            "tests.rank_trainer",
            "--manifest",
            str(manifest),
            "--bind",
            self.endpoint,
            "--rank",
            str(rank),
            "--world-size",
            str(world_size),
            "--batch-size",
            str(batch_size),
            "--epochs",
            str(EPOCHS),
            "--out",
            str(out),
        ]
        self.process: subprocess.Popen[str] | None = None

    def start(self, *options: str) -> Rank:
        self.process = subprocess.Popen(
            [*self.command, *options], stderr=subprocess.PIPE, text=True
        )
        return self

    def finish(self, timeout: float = 120) -> list[dict[str, Any]]:
        if self.process is None:
            raise RuntimeError("rank not started")
        _, err = self.process.communicate(timeout=timeout)
        if self.process.returncode != 0:
            raise AssertionError(f"rank exited {self.process.returncode}: {err[-3000:]}")
        return self.records()

    def records(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line]

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@contextmanager
def ranks(manifest: Path, folder: Path, world_size: int, **options: Any) -> Iterator[list[Rank]]:
    group = [
        Rank(manifest, folder / f"rank{r}.jsonl", rank=r, world_size=world_size, **options)
        for r in range(world_size)
    ]
    try:
        yield group
    finally:
        for rank in group:
            rank.kill()


@contextmanager
def producer(
    endpoints: list[str], data_root: Path, *, workers: int = 2, via_environment: bool = False
) -> Iterator[subprocess.Popen[str]]:
    """One `zerofeed producer` serving every endpoint (repeated --connect, or ZEROFEED_CONNECT)."""
    connect = [] if via_environment else [a for e in endpoints for a in ("--connect", e)]
    env = {**os.environ, "ZEROFEED_CONNECT": ",".join(endpoints)} if via_environment else None
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zerofeed",
            "producer",
            *connect,
            "--workers",
            str(workers),
            "--data-root",
            str(data_root),
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)


def by_epoch(records: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    epochs: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        epochs.setdefault(record["epoch"], []).append(record)
    return epochs


def assert_exactly_once(per_rank: list[list[dict[str, Any]]], samples: int) -> None:
    """Each sample once across the ranks in every epoch, and the same steps on every rank."""
    steps = {len(records) for records in per_rank}
    assert len(steps) == 1, f"ranks ran different numbers of steps: {steps}"
    for epoch in range(EPOCHS):
        rows = Counter(
            row for records in per_rank for r in by_epoch(records)[epoch] for row in r["rows"]
        )
        assert rows == Counter(range(samples)), f"epoch {epoch}: {rows}"
        for records in per_rank:
            assert [r["batch"] for r in by_epoch(records)[epoch]] == list(
                range(len(by_epoch(records)[epoch]))
            )


@pytest.mark.parametrize(("world_size", "samples"), [(2, 37), (3, 37)])
def test_ranks_share_one_producer_and_train_on_the_global_batches_of_one_trainer(
    tmp_path: Path, world_size: int, samples: int
) -> None:
    """37 samples, batch 4: 2 ranks have 5 steps (the last split 2 + 3); 3 ranks would have a
    last global batch of 1 sample, so it joins the step before (slices of 4 or 5)."""
    manifest = photo_dataset(tmp_path / "data", samples)
    with ExitStack() as stack:
        group = stack.enter_context(ranks(manifest, tmp_path, world_size))
        reference = Rank(
            manifest,
            tmp_path / "reference.jsonl",
            rank=0,
            world_size=1,
            batch_size=BATCH * world_size,
        )
        stack.callback(reference.kill)
        for rank in [*group, reference]:
            rank.start()
        endpoints = [rank.endpoint for rank in [*group, reference]]
        stack.enter_context(producer(endpoints, manifest.parent))
        per_rank = [rank.finish() for rank in group]
        single = reference.finish()
    assert_exactly_once(per_rank, samples)
    hashes = {
        (r["epoch"], row): h for r in single for row, h in zip(r["rows"], r["images"], strict=True)
    }
    for epoch in range(EPOCHS):
        steps = list(zip(*(by_epoch(records)[epoch] for records in per_rank), strict=True))
        single_batches = [r["rows"] for r in by_epoch(single)[epoch]]
        global_batches = [[row for part in step for row in part["rows"]] for step in steps]
        # The same samples in the same order; step by step the same batches, but for a short
        # last global batch that joined the step before.
        assert [row for batch in global_batches for row in batch] == [
            row for batch in single_batches for row in batch
        ]
        merged = len(single_batches) - len(global_batches)
        assert merged == (1 if world_size == 3 else 0)
        assert global_batches[: len(steps) - merged] == single_batches[: len(steps) - merged]
        for step in steps:  # the same augmentation, whichever rank trains on it
            for part in step:
                for row, digest in zip(part["rows"], part["images"], strict=True):
                    assert hashes[(epoch, row)] == digest
        sizes = [[len(part["rows"]) for part in step] for step in steps]
        assert sizes[-1] == ([2, 3] if world_size == 2 else [4, 4, 5])


def kill_tree(process: subprocess.Popen[str]) -> None:
    """SIGKILL a producer and its workers at once: nothing of it says goodbye."""
    tree = psutil.Process(process.pid)
    for member in [*tree.children(recursive=True), tree]:
        member.kill()


def test_a_producer_sigkilled_mid_epoch_loses_nothing_on_any_rank(tmp_path: Path) -> None:
    samples = 80
    manifest = photo_dataset(tmp_path / "data", samples)
    with ranks(manifest, tmp_path, 2) as group:
        for rank in group:
            rank.start("--delay", "0.05")
        endpoints = [rank.endpoint for rank in group]
        with (
            producer(endpoints, manifest.parent, workers=1) as doomed,
            producer(endpoints, manifest.parent, workers=1, via_environment=True),
        ):
            wait_until(lambda: len(group[0].records()) >= 4)
            kill_tree(doomed)
            per_rank = [rank.finish() for rank in group]
    assert_exactly_once(per_rank, samples)
    assert len(per_rank[0]) == EPOCHS * 10


def test_a_slow_rank_does_not_starve_a_fast_one(tmp_path: Path) -> None:
    """Rank 1's step takes 5x rank 0's: rank 0 goes at its own pace, rank 1 at its own."""
    samples = 80
    manifest = photo_dataset(tmp_path / "data", samples)
    with ranks(manifest, tmp_path, 2) as group:
        group[0].start("--delay", "0.04")
        group[1].start("--delay", "0.2")
        with producer([rank.endpoint for rank in group], manifest.parent):
            fast, slow = (rank.finish() for rank in group)
    assert_exactly_once([fast, slow], samples)
    steps = len(fast)  # 20: 2 epochs of 10
    finished = fast[-1]["time"]
    slow_done = sum(record["time"] <= finished for record in slow)
    assert slow_done <= 0.6 * steps, f"the slow rank had {slow_done} of {steps} when fast ended"

    def rate(records: list[dict[str, Any]]) -> float:
        return (len(records) - 1) / (records[-1]["time"] - records[0]["time"])

    assert rate(fast) >= 2.5 * rate(slow), (rate(fast), rate(slow))


def test_a_rank_killed_and_restarted_from_its_state_resumes_its_own_slice(
    tmp_path: Path,
) -> None:
    samples = 80
    manifest = photo_dataset(tmp_path / "data", samples)
    with ranks(manifest, tmp_path, 2) as group:
        group[0].start("--delay", "0.05")
        group[1].start("--delay", "0.1")
        with producer([rank.endpoint for rank in group], manifest.parent):
            wait_until(lambda: len(group[1].records()) >= 5)
            group[1].kill()
            trained_before = len(group[1].records())
            group[1].start("--resume")
            per_rank = [rank.finish() for rank in group]
    assert 5 <= trained_before < len(per_rank[1])
    assert_exactly_once(per_rank, samples)


def row_labelled_dataset(root: Path, count: int) -> Path:
    """Photos whose label is their own manifest row: a training step's labels name its samples."""
    manifest = photo_dataset(root, count)
    lines = ["path,label"] + [f"{row:03d}.jpg,{row}" for row in range(count)]
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def run_distributed_job(
    tmp_path: Path,
    module: str,
    environments: list[dict[str, str]],
    *options: str,
    own_options: list[list[str]] | None = None,
) -> list[dict[str, Any]]:
    """Start one ``module`` process per environment (with ``options``, and its ``own_options``),
    each bound to its own feed endpoint, and one producer serving them all; the JSON each
    wrote."""
    own_options = own_options or [[] for _ in environments]
    samples = 29
    manifest = row_labelled_dataset(tmp_path / "data", samples)
    endpoints = [f"tcp://127.0.0.1:{free_port()}" for _ in environments]
    outs = [tmp_path / f"worker{i}.json" for i in range(len(environments))]
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                "--manifest",
                str(manifest),
                "--bind",
                endpoint,
                "--samples",
                str(samples),
                "--out",
                str(out),
                *options,
                *own,
            ],
            env={**os.environ, **environment},
            stderr=subprocess.PIPE,
            text=True,
        )
        for endpoint, out, environment, own in zip(
            endpoints, outs, environments, own_options, strict=True
        )
    ]
    try:
        with producer(endpoints, manifest.parent):
            for worker in workers:
                _, err = worker.communicate(timeout=240)
                assert worker.returncode == 0, err[-4000:]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
    results = [json.loads(out.read_text()) for out in outs]
    for epoch in range(EPOCHS):
        seen = Counter(row for result in results for row in result["epochs"][epoch]["rows"])
        assert seen == Counter(range(samples)), f"epoch {epoch}: {seen}"
    # 29 samples, batch 4, 2 ranks: 4 steps each, the last split 2 + 3 (uneven on purpose)
    assert sorted(len(result["epochs"][0]["rows"]) for result in results) == [14, 15]
    assert len({result["weights"] for result in results}) == 1  # the gradients were shared
    return results


@pytest.mark.slow
def test_multi_worker_mirrored_strategy_trains_each_sample_once_per_epoch(tmp_path: Path) -> None:
    """Two TensorFlow workers on localhost (TF_CONFIG), each fed by its rank's FeedSequence."""
    cluster = {"worker": [f"127.0.0.1:{free_port()}" for _ in range(2)]}
    environments = [
        {
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
            "KERAS_BACKEND": "tensorflow",
        }
        for i in range(2)
    ]
    run_distributed_job(tmp_path, "tests.mwms_worker", environments)


def test_torch_ddp_gloo_trains_each_sample_once_per_epoch(tmp_path: Path) -> None:
    """Two torch DDP processes (gloo, CPU), RANK/WORLD_SIZE as torchrun sets them."""
    environments = [{"RANK": str(i), "WORLD_SIZE": "2"} for i in range(2)]
    rendezvous = f"tcp://127.0.0.1:{free_port()}"
    run_distributed_job(tmp_path, "tests.ddp_worker", environments, "--rendezvous", rendezvous)


@pytest.mark.slow
def test_keras_fit_under_jax_data_parallel_processes_trains_each_sample_once_per_epoch(
    tmp_path: Path,
) -> None:
    """Keras 3 `model.fit` of a FeedSequence in two JAX processes (`keras.distribution`,
    DataParallel): each step's global batch is both processes' rank slices."""
    pytest.importorskip("jax")
    coordinator = f"127.0.0.1:{free_port()}"
    run_distributed_job(
        tmp_path,
        "tests.jax_worker",
        [{"KERAS_BACKEND": "jax"}] * 2,
        "--coordinator",
        coordinator,
        own_options=[["--process", str(i)] for i in range(2)],
    )

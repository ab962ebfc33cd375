"""``model.fit`` under every Keras backend trains epoch k on the feed's epoch k, in plan order,
and a fit interrupted and restarted with ``BackupAndRestore`` + ``FeedCheckpoint`` trains on the
data an uninterrupted run would have; under TensorFlow, ``fit(feed.as_tf_dataset())`` too (the
way round tf.data's first-step stall, docs/consumer.md). Each run is a real fit in a subprocess
(tests/fit_probe.py), since a process has one Keras backend."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_id_dataset
from zerofeed.common.plan import EpochPlan

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_leftover_processes")]

PROBE = Path(__file__).with_name("fit_probe.py")
SAMPLES, BATCH, SEED = 44, 8, 5
TF_DATASET = ("--tf-dataset",)  # fit(feed.as_tf_dataset()) instead of fit(feed)


def fit_case(backend: str, data: tuple[str, ...] = (), name: str | None = None) -> Any:
    """A backend (skipped where its package is not installed) and what ``fit`` reads."""
    return pytest.param(
        backend,
        data,
        id=name or backend,
        marks=pytest.mark.skipif(
            importlib.util.find_spec(backend) is None, reason=f"{backend} is not installed"
        ),
    )


FITS = [
    fit_case("tensorflow"),
    fit_case("jax"),
    fit_case("torch"),
    fit_case("tensorflow", TF_DATASET, "tensorflow-as_tf_dataset"),
]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_id_dataset(tmp_path_factory.mktemp("backends"), SAMPLES)


def probe(backend: str, manifest: Path, *options: str, check: bool = True) -> Any:
    environment = dict(os.environ, KERAS_BACKEND=backend)
    done = subprocess.run(
        [sys.executable, str(PROBE), str(manifest), *options],
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
    )
    if not check:
        return done
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def plan_batches(epoch: int) -> list[list[int]]:
    plan = EpochPlan(num_samples=SAMPLES, batch_size=BATCH, seed=SEED, epoch=epoch, shuffle=True)
    return [sorted(plan.batch(i).tolist()) for i in range(len(plan))]


def trained(report: Any, epoch: int) -> list[list[int]]:
    return [sorted(rows) for rows in report["epochs"][str(epoch)]]


@pytest.mark.parametrize(("backend", "data"), FITS)
def test_fit_trains_epoch_k_on_the_feeds_epoch_k_in_plan_order(
    backend: str, data: tuple[str, ...], manifest: Path
) -> None:
    report = probe(backend, manifest, "--epochs", "2", *data)
    assert report["backend"] == backend
    for epoch in (0, 1):
        assert trained(report, epoch) == plan_batches(epoch), f"epoch {epoch} under {backend}"
    assert report["feed_epoch"] == 2
    # Keras' shape probes are served again from memory: each plan batch counts once.
    assert report["batches_delivered"] == 2 * report["batches_per_epoch"]
    assert report["images_delivered"] == 2 * SAMPLES


@pytest.mark.parametrize(("backend", "data"), [FITS[0], FITS[1], FITS[3]])
def test_backup_and_restore_resumes_on_the_uninterrupted_data(
    backend: str, data: tuple[str, ...], manifest: Path, tmp_path: Path
) -> None:
    backup = str(tmp_path / "backup")
    first = probe(
        backend, manifest, "--epochs", "3", "--backup", backup, "--interrupt-at", "1", *data
    )
    assert first["interrupted"]
    assert trained(first, 0) == plan_batches(0)
    resumed = probe(backend, manifest, "--epochs", "3", "--backup", backup, *data)
    assert set(resumed["epochs"]) == {"1", "2"}, "Keras resumes at the interrupted epoch"
    for epoch in (1, 2):
        assert trained(resumed, epoch) == plan_batches(epoch)
    assert resumed["feed_epoch"] == 3


def test_restoring_into_a_feed_with_other_batches_says_what_differs(
    manifest: Path, tmp_path: Path
) -> None:
    backup = str(tmp_path / "backup")
    probe("tensorflow", manifest, "--epochs", "2", "--backup", backup, "--interrupt-at", "1")
    done = probe(
        "tensorflow", manifest, "--epochs", "2", "--backup", backup, "--seed", "6", check=False
    )
    assert done.returncode != 0
    assert "seed: saved 5, this feed 6" in done.stderr

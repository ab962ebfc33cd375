"""The PyTorch adapter: DataLoader(batch_size=None) over real producers, epochs in plan order,
state_dict round trip; it imports neither Keras nor TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import ID_SIZE, ids_of, write_id_dataset
from zerofeed.common.plan import EpochPlan

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("no_leftover_processes")


def test_torch_feed_serves_plan_epochs_and_resumes(tmp_path: Path) -> None:
    from torch.utils.data import DataLoader

    from zerofeed.consumer.torch import TorchFeed

    manifest = write_id_dataset(tmp_path, 30)
    settings = {"batch_size": 8, "image_size": ID_SIZE, "seed": 3, "local_producers": 1}
    with TorchFeed(manifest, **settings) as feed:
        loader = DataLoader(feed, batch_size=None)
        epochs = []
        for epoch in range(2):
            batches = list(loader)
            images, labels = batches[0]
            assert images.dtype == torch.uint8 and tuple(images.shape[1:]) == (*ID_SIZE, 3)
            assert labels.dtype == torch.int64
            rows = [ids_of(x.numpy()) for x, _ in batches]
            plan = EpochPlan(num_samples=30, batch_size=8, seed=3, epoch=epoch, shuffle=True)
            assert rows == [plan.batch(i).tolist() for i in range(len(plan))]
            epochs.append(rows)
        assert feed.epoch == 2
        iterator = iter(loader)
        next(iterator)  # one batch of epoch 2, then a checkpoint
        state = json.loads(json.dumps(feed.state_dict()))
    with TorchFeed(manifest, **settings) as resumed:
        resumed.load_state_dict(state)
        rest = [ids_of(x.numpy()) for x, _ in DataLoader(resumed, batch_size=None)]
        plan = EpochPlan(num_samples=30, batch_size=8, seed=3, epoch=2, shuffle=True)
        assert rest == [plan.batch(i).tolist() for i in range(1, len(plan))]
        assert Counter(r for e in epochs for b in e for r in b) == Counter(2 * list(range(30)))


def test_torch_adapter_imports_no_keras_or_tensorflow() -> None:
    code = (
        "import sys, zerofeed.consumer.torch, zerofeed.consumer;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"

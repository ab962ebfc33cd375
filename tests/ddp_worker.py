"""One rank of a 2-process torch ``DistributedDataParallel`` job (``gloo``, CPU) for the tests.

``RANK``/``WORLD_SIZE`` (set by the test, as ``torchrun`` sets them) give the rank through
:func:`~zerofeed.consumer.rank_and_world_size`; the rank's ``TorchFeed`` serves its slices from
producers the test starts. The labels are the samples' own manifest rows; ``--out`` gets the rows
each step trained on, per epoch, and a digest of the final weights (equal on every rank when
DDP really averaged the gradients).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from tests.rank_trainer import FRAMEWORK_FEED
from zerofeed.consumer import rank_and_world_size
from zerofeed.consumer.torch import TorchFeed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--bind", required=True)
    parser.add_argument("--samples", type=int, required=True)
    parser.add_argument("--rendezvous", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rank, world_size = rank_and_world_size()
    dist.init_process_group("gloo", init_method=args.rendezvous, rank=rank, world_size=world_size)
    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Linear(16 * 16 * 3, args.samples))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    epochs = []
    with TorchFeed(
        args.manifest, rank=rank, world_size=world_size, bind=args.bind, **FRAMEWORK_FEED
    ) as feed:
        loader = DataLoader(feed, batch_size=None)
        for epoch in range(2):
            rows: list[int] = []
            for images, labels in loader:
                logits = model(images.reshape(len(images), -1).float() / 255)
                loss = torch.nn.functional.cross_entropy(logits, labels.long())
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                rows.extend(int(row) for row in labels)
            epochs.append({"epoch": epoch, "rows": rows})
    weights = b"".join(p.detach().numpy().tobytes() for p in model.parameters())
    args.out.write_text(
        json.dumps({"epochs": epochs, "weights": hashlib.sha256(weights).hexdigest()})
    )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

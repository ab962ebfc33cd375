"""What every pipeline of the benchmark does, and the settings of one benchmark run."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "AUGMENT",
    "BATCH_SIZE",
    "IMAGE_SIZE",
    "MAX_QUEUE_SIZE",
    "RunConfig",
    "machine_cores",
]

BATCH_SIZE = 64
IMAGE_SIZE = (224, 224)
MAX_QUEUE_SIZE = 8  # FeedSequence's default; the memory target is derived from it
CROP_SCALE = (0.35, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
AUGMENT: dict[str, Any] = {
    "random_resized_crop": {"scale": list(CROP_SCALE), "ratio": list(CROP_RATIO)},
    "horizontal_flip": True,
}


def machine_cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Settings handed to every pipeline's subprocess (as JSON on its command line)."""

    manifest: str
    images: int
    runs: int
    warmup: int
    producers: int | str  # a count, or "auto" (FeedSequence's local_producers)
    workers: int
    seed: int = 0
    pace_ms: float = 0.0
    """``model_alone_paced``: the step interval to hold (``zerofeed_fit``'s mean step)."""

    @property
    def manifest_path(self) -> Path:
        return Path(self.manifest)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        return cls(**json.loads(text))

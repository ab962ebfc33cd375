"""The memory baseline: a process that imports Keras (hence TensorFlow) and does nothing else."""

from __future__ import annotations

from bench.config import RunConfig

__all__ = ["run_baseline"]


def run_baseline(cfg: RunConfig) -> dict[str, object]:
    """Import Keras; the caller records this process's peak RSS."""
    import keras

    return {"keras_version": keras.__version__}

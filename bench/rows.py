"""The rows of the benchmark: what each one runs, at what quality, doing what work.

A row's ``runner`` is imported only in the subprocess that runs it, so each pipeline pays for its
own imports (TensorFlow, Keras, zerofeed) and nothing else.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.config import RunConfig

__all__ = ["ROWS", "SHORT_ROW_RUNS", "Row", "row"]

SHORT_ROW_RUNS = 3
"""Timed epochs a round, at least, of the rows whose figures the tightest targets compare
(``zerofeed``, ``zerofeed_fit``, ``raw``, ``model_alone_paced``). Their epochs last 1.5-3 s on the
photos, and this VM's speed swings by +-12 % from one 1.5 s window to the next (860-1,137 img/s
of ``raw`` over 60 s, 2026-12-07): one epoch a round is one draw of that swing, three are a
median of it, for a few seconds more a round."""

_AA = "antialiased (Pillow bilinear)"
_CROP = "decode, RRC 35-100 %, resize 224, flip, uint8, batch 64"


@dataclass(frozen=True)
class Row:
    """One measured configuration."""

    key: str
    name: str
    quality: str
    work: str
    runner: str  # "module:function"
    kwargs: dict[str, Any] = field(default_factory=dict)
    kind: str = "throughput"  # or "raw" (single core), "memory" (4x data), "baseline", "model"
    sets: tuple[str, ...] = ("photos", "large", "mixed")  # the data sets (--set) it runs on
    min_runs: int = 1  # timed epochs per round at least, whatever --runs says (see SHORT_ROW_RUNS)

    def run(self, cfg: RunConfig) -> dict[str, object]:
        """Import the runner and call it (in the row's subprocess)."""
        module, function = self.runner.split(":")
        runner: Callable[..., dict[str, object]] = getattr(
            importlib.import_module(module), function
        )
        return runner(cfg, **self.kwargs)


ROWS: tuple[Row, ...] = (
    Row(
        "zerofeed",
        "zerofeed FeedSequence, seq[i] loop",
        _AA,
        _CROP + "; only the crop window is decoded (reduced scale when the crop allows)",
        "bench.pipelines.feed:run_feed_iterate",
        min_runs=SHORT_ROW_RUNS,
    ),
    Row(
        "zerofeed_fit",
        "zerofeed FeedSequence, model.fit",
        _AA,
        "as above, plus a trivial model's training step",
        "bench.pipelines.feed:run_feed_fit",
        min_runs=SHORT_ROW_RUNS,
    ),
    Row(
        "tfdata_fused",
        "tf.data decode_and_crop_jpeg",
        "not antialiased, fast IDCT (TF's default), fused",
        _CROP + "; only the crop window is decoded",
        "bench.pipelines.tfdata:run_tfdata",
        {"fused": True, "antialias": False},
    ),
    Row(
        "tfdata_fused_accurate",
        "tf.data decode_and_crop_jpeg, accurate IDCT",
        "not antialiased, accurate IDCT (as Pillow and zerofeed), fused",
        _CROP + "; only the crop window is decoded, with dct_method='INTEGER_ACCURATE'",
        "bench.pipelines.tfdata:run_tfdata",
        {"fused": True, "antialias": False, "accurate_idct": True},
    ),
    Row(
        "tfdata_fused_fit",
        "tf.data decode_and_crop_jpeg, model.fit",
        "not antialiased, fast IDCT (TF's default), fused",
        "as tfdata_fused, plus the same trivial model's training step as zerofeed_fit",
        "bench.pipelines.tfdata:run_tfdata_fit",
        {"fused": True, "antialias": False},
    ),
    Row(
        "tfdata_fused_scaled",
        "tf.data decode_and_crop_jpeg, reduced DCT scale",
        "not antialiased, fast IDCT (TF's default), fused, reduced scale",
        _CROP + "; only the crop window is decoded, at the largest libjpeg scale (1/8, 1/4, "
        "1/2) that keeps the crop at least 224 px (decode_and_crop_jpeg's ratio), as zerofeed",
        "bench.pipelines.tfdata:run_tfdata",
        {"fused": True, "antialias": False, "scaled": True},
        sets=("large",),
    ),
    Row(
        "model_alone",
        "the trivial model alone, model.fit on one cached batch",
        "-",
        "no input pipeline: tf.data from_tensors(one batch).repeat(); the fit rows' training "
        "step alone (its CPU per batch is what the fit rows' figures are compared with)",
        "bench.pipelines.fit:run_model_alone",
        kind="model",
    ),
    Row(
        "model_alone_paced",
        "the trivial model alone, one cached batch, at zerofeed_fit's step rate",
        "-",
        "as model_alone, but each step is held to the zerofeed_fit row's mean step in the same "
        "round (the trainer idles between steps, as when it waits for input): the baseline of "
        "the trainer-cost target",
        "bench.pipelines.fit:run_model_alone",
        {"paced": True},
        kind="model",
        min_runs=SHORT_ROW_RUNS,  # idle steps vary in cost more than busy ones
    ),
    Row(
        "tfdata",
        "tf.data decode_jpeg + slice",
        "not antialiased, fast IDCT (TF's default), not fused",
        _CROP,
        "bench.pipelines.tfdata:run_tfdata",
        {"fused": False, "antialias": False},
    ),
    Row(
        "tfdata_fused_aa",
        "tf.data decode_and_crop_jpeg",
        "antialiased, fast IDCT (TF's default), fused",
        _CROP + "; only the crop window is decoded",
        "bench.pipelines.tfdata:run_tfdata",
        {"fused": True, "antialias": True},
    ),
    Row(
        "tfdata_aa",
        "tf.data decode_jpeg + slice",
        "antialiased, fast IDCT (TF's default), not fused",
        _CROP,
        "bench.pipelines.tfdata:run_tfdata",
        {"fused": False, "antialias": True},
    ),
    Row(
        "dali_aa",
        "NVIDIA DALI, CPU pipeline",
        "antialiased",
        _CROP + "; decoders.image_random_crop (region decode where it can), resize antialias=True",
        "bench.pipelines.dali:run_dali",
        {"antialias": True},
    ),
    Row(
        "dali",
        "NVIDIA DALI, CPU pipeline",
        "not antialiased",
        _CROP + "; decoders.image_random_crop (region decode where it can), resize antialias=False",
        "bench.pipelines.dali:run_dali",
        {"antialias": False},
    ),
    Row(
        "spdl",
        "Meta SPDL, FFmpeg decode + filter graph",
        "antialiased (swscale bilinear), full decode",
        _CROP + "; FFmpeg decodes the whole image, crop/scale/hflip in its filter graph; SPDL's "
        "pipeline, one thread per core",
        "bench.pipelines.spdl_pipeline:run_spdl",
    ),
    Row(
        "pydataset_mp",
        "PyDataset (PIL), use_multiprocessing=True",
        _AA,
        _CROP + "; full decode",
        "bench.pipelines.pil:run_pydataset",
        {"use_multiprocessing": True},
        sets=("photos", "mixed"),
    ),
    Row(
        "pydataset_threads",
        "PyDataset (PIL), threads",
        _AA,
        _CROP + "; full decode",
        "bench.pipelines.pil:run_pydataset",
        {"use_multiprocessing": False},
        sets=("photos", "mixed"),
    ),
    Row(
        "naive",
        "PyDataset (PIL), workers=1, ds[i] loop",
        _AA,
        _CROP + "; full decode",
        "bench.pipelines.pil:run_naive",
        sets=("photos", "mixed"),
    ),
    *(
        Row(
            f"zerofeed_{where}",
            f"zerofeed FeedSequence, seq[i] loop, {name}",
            _AA,
            f"as the zerofeed row, the same images {how}",
            "bench.pipelines.storage:run_storage",
            {"where": where},
            sets=("photos",),
        )
        for where, name, how in (
            ("shards", "tar shards", "packed by `zerofeed pack` in 64 MB tars on local disk"),
            ("http", "nginx", "served by nginx on loopback (one GET per image)"),
            ("http_shards", "nginx, shards", "in 64 MB tars served by nginx (ranged GETs)"),
            ("s3", "moto S3", "in moto's S3 server on loopback (a Python server, same cores)"),
            ("s3_shards", "moto S3, shards", "in 8 MB tars in moto's S3 server (ranged GETs)"),
        )
    ),
    Row(
        "raw",
        "zerofeed Renderer.render_into, 1 core, in-process",
        _AA,
        "zerofeed's per-image work alone (no batching, transport or Keras)",
        "bench.pipelines.raw:run_raw",
        kind="raw",
        min_runs=SHORT_ROW_RUNS,
    ),
    Row(
        "zerofeed_4x",
        "zerofeed FeedSequence, seq[i] loop, 4x data set",
        _AA,
        "as the zerofeed row, one epoch of 4x the images (memory check)",
        "bench.pipelines.feed:run_feed_iterate",
        kind="memory",
        sets=("photos",),
    ),
    Row(
        "baseline",
        "bare `import keras`",
        "-",
        "imports Keras (and TensorFlow), nothing else",
        "bench.baseline:run_baseline",
        kind="baseline",
    ),
)

_BY_KEY = {r.key: r for r in ROWS}


def row(key: str) -> Row:
    """The row called ``key``."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise SystemExit(f"unknown row {key!r}; rows: {', '.join(_BY_KEY)}") from None

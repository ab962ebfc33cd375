"""Turn one run's results into ``results.md``, ``results.png`` and ``results.json``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.rows import ROWS, SHORT_ROW_RUNS
from bench.targets import (
    MEMORY_LIMIT_BYTES,
    MiB,
    Target,
    consumer_peak,
    extra_above_keras,
)

__all__ = ["markdown", "write_chart", "write_outputs"]

_HEADER = (
    "| row | quality | work | images/s (median) | runs (images/s) | zerofeed ÷ row "
    "| consumer CPU ms/batch | tree CPU ms/image | consumer peak MiB | above keras MiB "
    "| tree peak MiB |"
)


def _mib(value: object) -> str:
    return "-" if value is None else f"{int(value) / MiB:.0f}"  # type: ignore[call-overload]


def _cpu(result: Mapping[str, Any]) -> str:
    if "cpu_ms_per_batch" not in result:
        return "-"
    return f"{result['cpu_ms_per_batch']:.1f} (sys {result.get('sys_ms_per_batch', 0):.1f})"


def _table_row(key: str, rows: Mapping[str, Mapping[str, Any]]) -> str:
    spec = next(r for r in ROWS if r.key == key)
    result = rows.get(key, {})
    if "error" in result:
        return f"| {spec.name} | {spec.quality} | {spec.work} | FAILED: {result['error']} |"
    if "absent" in result:
        return f"| {spec.name} | {spec.quality} | {spec.work} | skipped: {result['absent']} |"
    rate = result.get("images_per_s")
    zf = rows.get("zerofeed", {}).get("images_per_s")
    ratio = f"{zf / rate:.2f}x" if zf and rate and spec.kind == "throughput" else "-"
    runs = ", ".join(f"{r:.0f}" for r in result.get("runs_images_per_s", []))
    extra = extra_above_keras(rows, key)
    cells = [
        spec.name,
        spec.quality,
        spec.work,
        f"**{rate:.0f}**" if rate else "-",
        runs or "-",
        ratio,
        _cpu(result),
        f"{result['tree_cpu_ms_per_image']:.2f}" if "tree_cpu_ms_per_image" in result else "-",
        _mib(consumer_peak(result)),
        "-" if extra is None or spec.kind in ("raw", "baseline") else f"{extra / MiB:.0f}",
        _mib(result.get("peak_tree_rss_bytes")),
    ]
    return "| " + " | ".join(cells) + " |"


def _target_line(target: Target) -> str:
    mark = {True: "PASS", False: "FAIL", None: "N/A"}[target.passed]
    return f"- **{mark}** {target.name}: {target.measured} (target {target.required})"


_SET_NAMES = {
    "photos": "JPEGs",
    "large": "large JPEGs (2-4 MP)",
    "mixed": "images of mixed formats (baseline, progressive, greyscale, 4:4:4 and CMYK JPEGs, "
    "PNGs)",
}


def markdown(report: Mapping[str, Any]) -> str:
    """The whole report as Markdown: context, the table, the physical limit and the targets."""
    rows, cfg, data = report["rows"], report["config"], report["dataset"]
    raw = rows.get("raw", {}).get("images_per_s")
    cores = report["machine"]["cores"]
    lines = [
        "# zerofeed benchmark",
        "",
        f"{report['machine']['description']}; {cores} cores. Data: {data['images']} "
        f"{_SET_NAMES[cfg.get('data_set', 'photos')]}, mean {data['mean_bytes'] / 1000:.1f} KB, "
        f"mean {data['mean_width']:.0f}x{data['mean_height']:.0f} px"
        + (f" (4x set: {report['dataset_4x']['images']} images)" if report["dataset_4x"] else "")
        + ". Batch 64, 224x224 uint8; "
        f"{_producers(cfg['producers'], cores)}, {cfg['workers']} PyDataset workers; "
        f"{_epochs(cfg)}. "
        f"Total {report['total_seconds'] / 60:.1f} min."
        + (
            f" **Under load:** {cfg['load']} busy-loop process(es) competed for the cores "
            "during every row."
            if cfg.get("load")
            else ""
        ),
        "",
        _HEADER,
        "|---" * (_HEADER.count("|") - 1) + "|",
    ]
    lines += [_table_row(r.key, rows) for r in ROWS if r.kind != "baseline" and r.key in rows]
    base = rows.get("baseline", {})
    lines += [
        "",
        f"Bare `import keras` process: {_mib(base.get('maxrss_bytes'))} MiB peak RSS (the memory baseline).",
    ]
    if raw:
        lines.append(
            f"Physical limit of zerofeed's per-image work: {cores} cores x {raw:.0f} img/s = "
            f"{cores * raw:.0f} img/s."
        )
    lines += _fit_costs(rows) + _storage_requests(rows) + _end_stalls(rows) + _contention(rows)
    lines += ["", "## Targets", ""]
    lines += [_target_line(Target(**t)) for t in report["targets"]]
    return "\n".join(lines) + "\n"


def _fit_costs(rows: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What each fit row's input pipeline costs the training process, per batch, against the
    model alone run flat out and at zerofeed_fit's step rate."""
    lines = []
    for baseline, what in (
        ("model_alone", "run flat out"),
        ("model_alone_paced", "at zerofeed_fit's step rate"),
    ):
        model = rows.get(baseline, {}).get("cpu_ms_per_batch")
        if model is None:
            continue
        costs = [
            f"{key} {cpu - model:+.2f} ms ({cpu:.2f} - {model:.2f})"
            for key in ("zerofeed_fit", "tfdata_fused_fit")
            if (cpu := rows.get(key, {}).get("cpu_ms_per_batch")) is not None
        ]
        if costs:
            lines.append(
                f"Trainer CPU per batch under `fit`, minus the model alone on one cached batch "
                f"{what} (what the input pipeline costs the training process): "
                + ", ".join(costs)
                + "."
            )
    return lines


def _storage_requests(rows: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Requests per image of the rows that read from a server that logs them (nginx)."""
    counted = [
        f"{key} {result['requests_per_image']:.2f}"
        for key, result in rows.items()
        if result.get("requests_per_image") is not None
    ]
    if not counted:
        return []
    return [
        "Requests per image, from nginx's access log over the last timed epoch: "
        + ", ".join(counted)
        + " (the S3 rows make one GET, or one ranged GET, per image by construction)."
    ]


def _end_stalls(rows: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Rows whose epochs went on for over 0.5 s after their last batch (not in images/s)."""
    stalls = [
        f"{key} ({', '.join(f'{s:.1f}' for s in result['end_s'])} s)"
        for key, result in rows.items()
        if max(result.get("end_s") or [0.0]) > 0.5
    ]
    if not stalls:
        return []
    return [
        "Epochs are timed to their last batch; these rows then took longer to end the epoch "
        "(closing the iterator, on_epoch_end), per timed run: " + ", ".join(stalls) + "."
    ]


def _contention(rows: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """A warning for rows during which other jobs used over a quarter of a core on average."""
    noisy = [
        f"{key} ({result['other_cpu_s']:.0f} CPU s in {result['wall_s']:.0f} s)"
        for key, result in rows.items()
        if result.get("other_cpu_s", 0.0) > 0.25 * result.get("wall_s", 0.0)
    ]
    if not noisy:
        return ["No other job used a noticeable share of the CPUs while rows ran."]
    return ["**Other jobs competed for the CPUs during:** " + ", ".join(noisy) + "."]


def write_chart(report: Mapping[str, Any], path: Path) -> None:
    """Images/s of every throughput row, and consumer memory above bare Keras."""
    rows, cores = report["rows"], report["machine"]["cores"]
    shown = [r for r in ROWS if r.kind == "throughput" and rows.get(r.key, {}).get("images_per_s")]
    labels = [f"{r.name}\n[{r.quality}]" for r in shown]
    colours = ["tab:green" if r.key.startswith("zerofeed") else "tab:gray" for r in shown]
    fig, (speed, memory) = plt.subplots(1, 2, figsize=(15, 0.55 * len(shown) + 2), sharey=True)
    speed.barh(labels, [rows[r.key]["images_per_s"] for r in shown], color=colours)
    raw = rows.get("raw", {}).get("images_per_s")
    if raw:
        speed.axvline(
            cores * raw, color="tab:red", ls="--", label=f"{cores} x zerofeed 1-core rate"
        )
        speed.legend(loc="lower right")
    speed.set_xlabel("images/s (median)")
    speed.invert_yaxis()
    extras = [extra_above_keras(rows, r.key) or 0 for r in shown]
    memory.barh(labels, [e / MiB for e in extras], color=colours)
    memory.axvline(MEMORY_LIMIT_BYTES / MiB, color="tab:red", ls="--", label="zerofeed target")
    memory.set_xlabel("consumer peak RSS above bare `import keras` (MiB)")
    memory.legend(loc="lower right")
    fig.suptitle(
        f"zerofeed vs tf.data vs PyDataset, {report['dataset']['images']} JPEGs, {cores} cores"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(report: Mapping[str, Any], folder: Path) -> str:
    """Write the three files into ``folder``; return the Markdown."""
    folder.mkdir(parents=True, exist_ok=True)
    text = markdown(report)
    (folder / "results.md").write_text(text)
    (folder / "results.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    write_chart(report, folder / "results.png")
    return text


def _producers(producers: int | str, cores: int) -> str:
    if producers == "auto":
        return (
            f"zerofeed producers auto ({cores}, up to {2 * cores} while each added one raises "
            "images/s)"
        )
    return f"{producers} zerofeed producers"


def _epochs(cfg: dict[str, Any]) -> str:
    rounds, runs, warmup = int(cfg.get("rounds", 1)), int(cfg["runs"]), int(cfg["warmup"])
    if rounds == 1:
        text = f"median of {runs} timed epoch(s) after {warmup} warm-up epoch(s)"
    else:
        text = (
            f"median of {runs * rounds} timed epochs: {rounds} rounds, each running every row in "
            f"turn in a fresh process ({warmup} warm-up epoch(s), then {runs} timed)"
        )
    chosen = cfg.get("rows") or [row.key for row in ROWS]
    longer = [row.key for row in ROWS if row.min_runs > runs and row.key in chosen]
    if longer and not cfg.get("quick"):
        text += (
            f"; {', '.join(longer)} time {SHORT_ROW_RUNS} epochs a round, as their short epochs "
            "swing with the machine's speed"
        )
    return text

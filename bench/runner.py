"""Run one row in a fresh subprocess while sampling its process tree's memory from here."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from bench.config import RunConfig
from bench.measure import TreeSampler

__all__ = ["competing_load", "pool_rounds", "run_row"]

_REPO = Path(__file__).resolve().parent.parent


def run_row(
    key: str, cfg: RunConfig, *, log_dir: Path, timeout: float, load: int = 0
) -> dict[str, object]:
    """The child's JSON result plus peak RSS figures; ``{"error": ...}`` if the child failed.

    ``load``: that many busy-loop processes compete for the cores while the row runs (a fixed
    stand-in for a training box's other work); their CPU time is not counted as other jobs'.

    ``other_cpu_s`` is the CPU time the rest of the machine used meanwhile: anything well above
    zero means another job competed for the cores and the row's speed is understated.

    The child's output goes to ``log_dir/<key>.log``.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{key}.log"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    with tempfile.TemporaryDirectory(prefix="zerofeed-bench-") as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, "-m", "bench.child", key, cfg.to_json(), str(out)]
        started, machine, ours = time.perf_counter(), _machine_busy(), _our_cpu()
        with log_path.open("w") as log, competing_load(load):
            child = subprocess.Popen(command, cwd=_REPO, env=env, stdout=log, stderr=log)
            with TreeSampler(child.pid) as sampler:
                try:
                    code = child.wait(timeout)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
                    return {"error": f"timed out after {timeout:.0f} s", "log": str(log_path)}
        if code != 0 or not out.exists():
            return {"error": f"exit status {code}: {_tail(log_path)}", "log": str(log_path)}
        result: dict[str, object] = json.loads(out.read_text())
    result.update(
        other_cpu_s=max(0.0, _machine_busy() - machine - (_our_cpu() - ours)),
        wall_s=time.perf_counter() - started,
        peak_rss_bytes=sampler.peak_rss,
        peak_tree_rss_bytes=sampler.peak_tree_rss,
        peak_processes=sampler.peak_processes,
    )
    return result


@contextlib.contextmanager
def competing_load(processes: int) -> Iterator[None]:
    """``processes`` busy loops (``while True: pass``), each wanting a whole core, for the
    duration of the block; killed and reaped after it."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        yield
    finally:
        for process in busy:
            process.kill()
            process.wait()


def _machine_busy() -> float:
    """CPU seconds the machine's cores were busy or stolen by the hypervisor, since boot.

    Counts processes in other containers too, which ``ps`` does not show.
    """
    times = psutil.cpu_times()
    fields = ("user", "nice", "system", "irq", "softirq", "steal")  # guest is inside user
    return sum(getattr(times, name, 0.0) for name in fields)


def _our_cpu() -> float:
    """CPU seconds of this process and of its waited-for descendants (the rows run so far)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _tail(path: Path, lines: int = 3) -> str:
    text = path.read_text(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:])


_POOLED = (
    ("runs_images_per_s", "images_per_s"),
    ("runs_cpu_ms_per_batch", "cpu_ms_per_batch"),
    ("runs_tree_cpu_ms_per_image", "tree_cpu_ms_per_image"),
)


def pool_rounds(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One row's results from several rounds as one: timed epochs pooled (medians over all of
    them), memory peaks the highest, CPU used by other jobs added up. A failed round is left out
    (and named); with every round failed, the last error."""
    good = [r for r in results if "error" not in r]
    if not good:
        return results[-1]
    pooled = dict(good[-1])
    for runs_key, median_key in _POOLED:
        if all(runs_key in r for r in good):
            values = [v for r in good for v in r[runs_key]]
            pooled[runs_key] = values
            pooled[median_key] = statistics.median(values)
    for key in ("sys_ms_per_batch",):
        if all(key in r for r in good):
            pooled[key] = statistics.median(r[key] for r in good)
    for key in ("maxrss_bytes", "peak_rss_bytes", "peak_tree_rss_bytes", "peak_processes"):
        if all(key in r for r in good):
            pooled[key] = max(r[key] for r in good)
    for key in ("end_s", "images_per_run", "batches_per_run"):
        if all(key in r for r in good):
            pooled[key] = [v for r in good for v in r[key]]
    pooled["other_cpu_s"] = sum(float(r.get("other_cpu_s", 0.0)) for r in good)
    pooled["rounds"] = len(good)
    if len(good) < len(results):
        pooled["failed_rounds"] = [r["error"] for r in results if "error" in r]
    return pooled

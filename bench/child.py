"""Run one row in this (fresh) process and write its figures as JSON.

    python -m bench.child ROW CONFIG_JSON OUT_JSON

The parent samples this process tree's RSS from outside (:class:`bench.measure.TreeSampler`), so
the CPU time measured here is the pipeline's alone; this process adds its own ``getrusage`` peak.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bench.config import RunConfig
from bench.measure import max_rss_bytes
from bench.rows import row

__all__ = ["main"]


def main(argv: list[str]) -> None:
    key, config, out = argv
    started = time.perf_counter()
    result = row(key).run(RunConfig.from_json(config))
    result["child_seconds"] = time.perf_counter() - started
    result["maxrss_bytes"] = max_rss_bytes()
    Path(out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])

"""The benchmark's CSV manifest (``path,label``, paths relative to the CSV) as absolute paths."""

from __future__ import annotations

import csv
from pathlib import Path

__all__ = ["read_manifest"]


def read_manifest(manifest: Path) -> tuple[list[str], list[int]]:
    """Absolute paths and integer labels of ``manifest``'s rows (after its header)."""
    with manifest.open(newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    root = manifest.parent
    return [str(root / path) for path, _ in rows], [int(label) for _, label in rows]

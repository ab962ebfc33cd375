"""Byte sizes written as people write them: ``256MB``, ``20GiB``, ``1_000_000``."""

from __future__ import annotations

import argparse
import re

__all__ = ["parse_size", "size_argument"]

_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}
_SIZE = re.compile(r"^\s*([0-9][0-9_]*(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")


def parse_size(text: str) -> int:
    """Bytes in ``text``: a number with an optional unit (B, KB, MB, GB, TB in powers of 1000;
    KiB, MiB, GiB, TiB in powers of 1024; case-insensitive). Raises ``ValueError``."""
    match = _SIZE.match(text)
    unit = match.group(2).upper() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(
            f"{text!r} is not a size; write a number with an optional unit, e.g. 256MB or 20GiB"
        )
    return int(float(match.group(1).replace("_", "")) * _UNITS[unit])


def size_argument(text: str) -> int:
    """:func:`parse_size` as an ``argparse`` type (a clean usage error for a bad size)."""
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc

"""Checks of FeedSequence's arguments, each failing with a message that says how to fix it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from zerofeed.common.errors import ConfigError
from zerofeed.common.protocol import DTYPES
from zerofeed.consumer.local import default_worker_count

__all__ = ["check_epoch", "check_seed", "check_settings", "resolve_local_producers"]


def resolve_local_producers(value: int | str) -> int:
    if value == "auto":
        return default_worker_count()
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(
            f'local_producers must be "auto" or a whole number >= 0, got {value!r}; '
            "use 0 when only remote producers feed this sequence."
        )
    return value


def check_epoch(epoch: object) -> int:
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ConfigError(f"epoch must be a whole number >= 0, got {epoch!r}")
    return epoch


def check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**63:
        raise ConfigError(f"seed must be a whole number in [0, 2**63), got {seed!r}")
    return int(seed)


def check_settings(
    *,
    batch_size: int,
    image_size: tuple[int, int],
    dtype: str,
    max_queue_size: int,
    on_error: str,
    timeout: float | None,
    lease_timeout: float,
    heartbeat_interval: float,
    task_timeout: float | None = None,
) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    if (
        not isinstance(image_size, Sequence)
        or len(image_size) != 2
        or not all(isinstance(side, int) and 1 <= side <= 16384 for side in image_size)
    ):
        raise ConfigError(f"image_size must be (height, width) in pixels, got {image_size!r}")
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if (
        isinstance(max_queue_size, bool)
        or not isinstance(max_queue_size, int)
        or max_queue_size < 1
    ):
        raise ConfigError(f"max_queue_size must be a whole number >= 1, got {max_queue_size!r}")
    if on_error not in ("raise", "skip"):
        raise ConfigError(f'on_error must be "raise" or "skip", got {on_error!r}')
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"timeout must be None or a positive number of seconds, got {timeout!r}")
    if task_timeout is not None and not task_timeout > 0:
        raise ConfigError(
            f"task_timeout must be None (adaptive) or a positive number of seconds, got "
            f"{task_timeout!r}"
        )
    if heartbeat_interval <= 0 or lease_timeout <= 2 * heartbeat_interval:
        raise ConfigError(
            "lease_timeout must exceed two heartbeat intervals: got lease_timeout="
            f"{lease_timeout!r}, heartbeat_interval={heartbeat_interval!r}"
        )

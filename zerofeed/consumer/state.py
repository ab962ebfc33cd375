"""A feed's checkpoint state: a small JSON-serialisable dict, checked before it is restored.

::

    {"format": "zerofeed.feed-state", "version": 1,
     "epoch": 3, "batch": 0,                      # the next batch to train on
     "fingerprint": {"manifest": "<sha256>", "seed": 7, "batch_size": 64, ...}}

The fingerprint is the recipe's (:meth:`~zerofeed.consumer.recipe.BatchRecipe.fingerprint`):
everything that decides the batches. A state is restored only into a feed with the same one, so a
resumed job trains on exactly the data the interrupted one would have. In data-parallel training
each rank saves its own state, and the fingerprint's ``rank`` and ``world_size`` make sure it is
restored only into the same rank of a job of the same size.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from zerofeed.common.errors import ConfigError

__all__ = ["STATE_FORMAT", "STATE_VERSION", "feed_state", "read_feed_state"]

STATE_FORMAT = "zerofeed.feed-state"
STATE_VERSION = 1
# Fingerprint fields newer than version 1's first states, with the value those states mean.
_DEFAULTS = {"rank": 0, "world_size": 1}


def feed_state(fingerprint: Mapping[str, Any], position: tuple[int, int]) -> dict[str, Any]:
    """The state of a feed with ``fingerprint`` that resumes at ``position`` = (epoch, batch)."""
    epoch, batch = position
    return {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "epoch": int(epoch),
        "batch": int(batch),
        "fingerprint": dict(fingerprint),
    }


def read_feed_state(
    state: object, fingerprint: Mapping[str, Any], batches_per_epoch: int
) -> tuple[int, int]:
    """The (epoch, batch) of ``state``, once it is known to fit a feed with ``fingerprint``.

    Raises:
        ConfigError: not a feed state, another version, or made for other batches (the message
            names each field that differs, with both values).
    """
    if isinstance(state, str | bytes):
        try:
            state = json.loads(state)
        except ValueError as exc:
            raise ConfigError(f"a feed state must be a dict (or its JSON); {exc}") from None
    if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
        raise ConfigError(
            f"not a zerofeed feed state (expected a dict with format {STATE_FORMAT!r}, as "
            f"feed.state() returns), got {str(state)[:200]}"
        )
    if state.get("version") != STATE_VERSION:
        raise ConfigError(
            f"feed state version {state.get('version')!r} is not supported; this zerofeed "
            f"reads version {STATE_VERSION}"
        )
    saved = state.get("fingerprint")
    if not isinstance(saved, Mapping):
        raise ConfigError("feed state has no fingerprint; it was not made by feed.state()")
    differences = [
        f"{key}: saved {saved.get(key, _DEFAULTS.get(key))!r}, this feed {value!r}"
        for key, value in fingerprint.items()
        if _normal(saved.get(key, _DEFAULTS.get(key))) != _normal(value)
    ]
    if differences:
        raise ConfigError(
            "cannot restore this feed state: it was made by a feed with other batches, or for "
            "another rank ("
            + "; ".join(differences)
            + "). Create the feed with the same settings (and seed) as the run that saved it."
        )
    epoch, batch = state.get("epoch"), state.get("batch")
    if not (isinstance(epoch, int) and isinstance(batch, int)) or not (
        _whole(epoch) and _whole(batch) and batch < batches_per_epoch
    ):
        raise ConfigError(
            f"feed state has an invalid position (epoch {epoch!r}, batch {batch!r}); batches run "
            f"from 0 to {batches_per_epoch - 1}"
        )
    return epoch, batch


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _normal(value: object) -> object:
    """JSON round trip: tuples and lists, int and equal floats compare alike."""
    return json.loads(json.dumps(value, sort_keys=True))

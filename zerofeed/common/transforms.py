"""Declarative, validated augmentation specs.

A user writes ``augment={"random_resized_crop": True, "horizontal_flip": True}``;
:func:`parse_augment` turns that into a frozen :class:`TransformSpec`, which travels to producers as a
plain msgpack map (:meth:`TransformSpec.to_wire`) and is validated again on arrival
(:meth:`TransformSpec.from_wire`). Code never travels: a transform of one's own is registered under a
name in a plugin module that producers load, and referred to here under ``"custom"``.

Producers apply the transforms in this fixed order, drawing random numbers in the same order, so that
a sample's result depends only on the spec and its seed: random resized crop (or a plain resize),
rotation, brightness, contrast, saturation, custom transforms (in the order given), flips.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import msgpack

from zerofeed.common.errors import ConfigError

__all__ = ["BUILTIN_TRANSFORMS", "CropSpec", "TransformSpec", "parse_augment"]

BUILTIN_TRANSFORMS = (
    "random_resized_crop",
    "horizontal_flip",
    "vertical_flip",
    "rotate",
    "brightness",
    "contrast",
    "saturation",
)
_CUSTOM_KEY = "custom"
_PLUGIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_MAX_PARAM_BYTES = 4096


@dataclass(frozen=True, kw_only=True)
class CropSpec:
    """Random resized crop: a crop covering ``scale`` of the area with aspect ratio in ``ratio``."""

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)


@dataclass(frozen=True, kw_only=True)
class TransformSpec:
    """A validated augmentation spec; the default is a plain resize."""

    random_resized_crop: CropSpec | None = None
    horizontal_flip: bool = False
    vertical_flip: bool = False
    rotate: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    custom: tuple[tuple[str, Mapping[str, Any]], ...] = field(default=())

    @property
    def plugin_names(self) -> tuple[str, ...]:
        """Names of the custom transforms a producer must have loaded to apply this spec."""
        return tuple(name for name, _ in self.custom)

    def to_wire(self) -> dict[str, Any]:
        """This spec as a msgpack-friendly map, in the ``augment`` format :func:`parse_augment` reads."""
        wire: dict[str, Any] = {}
        if self.random_resized_crop is not None:
            crop = self.random_resized_crop
            wire["random_resized_crop"] = {"scale": list(crop.scale), "ratio": list(crop.ratio)}
        for name in ("horizontal_flip", "vertical_flip"):
            if getattr(self, name):
                wire[name] = True
        for name in ("rotate", "brightness", "contrast", "saturation"):
            if getattr(self, name):
                wire[name] = getattr(self, name)
        if self.custom:
            wire[_CUSTOM_KEY] = {name: dict(params) for name, params in self.custom}
        return wire

    @classmethod
    def from_wire(cls, wire: object) -> TransformSpec:
        """Validate a spec received from a peer; raises :class:`ConfigError` when it is invalid."""
        if wire is None:
            return cls()
        return parse_augment(wire)


def parse_augment(augment: object) -> TransformSpec:
    """Validate a user's ``augment`` argument and return the equivalent :class:`TransformSpec`.

    Raises:
        ConfigError: an unknown key, or a value of the wrong type or out of range.
    """
    if augment is None:
        return TransformSpec()
    if not isinstance(augment, Mapping):
        raise ConfigError(
            f"augment must be None or a dict of transforms, got {type(augment).__name__}. "
            f'Example: augment={{"random_resized_crop": True, "horizontal_flip": True}}.'
        )
    unknown = [key for key in augment if key not in (*BUILTIN_TRANSFORMS, _CUSTOM_KEY)]
    if unknown:
        raise ConfigError(
            f"Unknown augment key(s) {unknown!r}. Built-in transforms: {', '.join(BUILTIN_TRANSFORMS)}. "
            f'A transform of your own is registered in a plugin module and named under "custom", '
            f'e.g. augment={{"custom": {{"{unknown[0]}": {{}}}}}} with producers started with '
            f"--plugin yourmodule (or FeedSequence(..., plugins=['yourmodule']))."
        )
    return TransformSpec(
        random_resized_crop=_crop(augment.get("random_resized_crop")),
        horizontal_flip=_flag(augment, "horizontal_flip"),
        vertical_flip=_flag(augment, "vertical_flip"),
        rotate=_amount(augment, "rotate", upper=180.0, unit="degrees"),
        brightness=_amount(augment, "brightness", upper=1.0, unit="fraction"),
        contrast=_amount(augment, "contrast", upper=1.0, unit="fraction"),
        saturation=_amount(augment, "saturation", upper=1.0, unit="fraction"),
        custom=_custom(augment.get(_CUSTOM_KEY)),
    )


def _flag(augment: Mapping[str, object], name: str) -> bool:
    value = augment.get(name, False)
    if not isinstance(value, bool):
        raise ConfigError(f"augment[{name!r}] must be True or False, got {value!r}.")
    return value


def _amount(augment: Mapping[str, object], name: str, *, upper: float, unit: str) -> float:
    value = augment.get(name, 0.0)
    if not _is_finite_number(value):
        raise ConfigError(f"augment[{name!r}] must be a number of {unit}, got {value!r}.")
    if not 0.0 <= value <= upper:
        raise ConfigError(
            f"augment[{name!r}] must be between 0 and {upper:g} {unit}, got {value!r}; "
            f"0 turns it off."
        )
    return float(value)


def _is_finite_number(value: object) -> TypeGuard[int | float]:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _crop(value: object) -> CropSpec | None:
    if value is None or value is False:
        return None
    if value is True:
        return CropSpec()
    if not isinstance(value, Mapping):
        raise ConfigError(
            "augment['random_resized_crop'] must be True, False or "
            f'{{"scale": [lo, hi], "ratio": [lo, hi]}}, got {value!r}.'
        )
    unknown = set(value) - {"scale", "ratio"}
    if unknown:
        raise ConfigError(
            f"augment['random_resized_crop'] has unknown key(s) {sorted(unknown)!r}; "
            "expected 'scale' and/or 'ratio'."
        )
    default = CropSpec()
    scale = _interval(value.get("scale", default.scale), "scale", lowest=0.0, highest=1.0)
    ratio = _interval(value.get("ratio", default.ratio), "ratio", lowest=0.0, highest=math.inf)
    return CropSpec(scale=scale, ratio=ratio)


def _interval(value: object, name: str, *, lowest: float, highest: float) -> tuple[float, float]:
    where = f"augment['random_resized_crop'][{name!r}]"
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ConfigError(f"{where} must be a pair [lo, hi], got {value!r}.")
    lo, hi = value
    for bound in (lo, hi):
        if not _is_finite_number(bound):
            raise ConfigError(f"{where} must hold two finite numbers, got {value!r}.")
    if not lowest < lo <= hi <= highest:
        limit = "1" if highest == 1.0 else "infinity"
        raise ConfigError(f"{where} must satisfy 0 < lo <= hi <= {limit}, got {value!r}.")
    return (float(lo), float(hi))


def _custom(value: object) -> tuple[tuple[str, Mapping[str, Any]], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise ConfigError(
            f'augment["custom"] must map transform names to parameter dicts, got {value!r}. '
            'Example: {"custom": {"sepia": {"strength": 0.5}}}.'
        )
    custom = []
    for name, params in value.items():
        if not isinstance(name, str) or not _PLUGIN_NAME.match(name):
            raise ConfigError(
                f"Custom transform name {name!r} is not valid: it must start with a letter or '_' "
                "and hold at most 64 letters, digits, '_', '.' or '-'."
            )
        if params is None:
            params = {}
        if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
            raise ConfigError(
                f'augment["custom"][{name!r}] must be a dict of keyword parameters, got {params!r}.'
            )
        try:
            packed = msgpack.packb(dict(params))
        except (TypeError, ValueError, OverflowError) as exc:
            raise ConfigError(
                f'augment["custom"][{name!r}] parameters must be plain values (numbers, strings, '
                f"booleans, None, lists and dicts of them) to travel to producers: {exc}. "
                "Convert numpy scalars with float() or int()."
            ) from None
        if len(packed) > _MAX_PARAM_BYTES:
            raise ConfigError(
                f'augment["custom"][{name!r}] parameters are larger than {_MAX_PARAM_BYTES} bytes; '
                "pass small settings, and load large data inside the plugin instead."
            )
        custom.append((name, dict(params)))
    return tuple(custom)

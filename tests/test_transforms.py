"""Tests for zerofeed.common.transforms: parsing augment specs, every rejection, the wire form."""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zerofeed.common.errors import ConfigError
from zerofeed.common.transforms import (
    BUILTIN_TRANSFORMS,
    CropSpec,
    TransformSpec,
    parse_augment,
)


def rejected(augment: object, *fragments: str) -> str:
    """Parse ``augment``, expecting a ConfigError whose message holds every fragment."""
    with pytest.raises(ConfigError) as info:
        parse_augment(augment)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# --------------------------------------------------------------------------- valid specs


def test_none_is_plain_resize() -> None:
    spec = parse_augment(None)
    assert spec == TransformSpec()
    assert spec.random_resized_crop is None
    assert not spec.horizontal_flip and not spec.vertical_flip
    assert spec.rotate == spec.brightness == spec.contrast == spec.saturation == 0.0
    assert spec.custom == () and spec.plugin_names == ()
    assert spec.to_wire() == {}


def test_empty_dict_is_plain_resize() -> None:
    assert parse_augment({}) == TransformSpec()


def test_crop_true_uses_defaults() -> None:
    spec = parse_augment({"random_resized_crop": True})
    assert spec.random_resized_crop == CropSpec()
    assert spec.random_resized_crop.scale == (0.08, 1.0)
    assert spec.random_resized_crop.ratio == pytest.approx((3 / 4, 4 / 3))


def test_crop_false_is_off() -> None:
    assert parse_augment({"random_resized_crop": False}).random_resized_crop is None


def test_full_dict() -> None:
    spec = parse_augment(
        {
            "random_resized_crop": {"scale": (0.5, 1), "ratio": [1, 2]},
            "horizontal_flip": True,
            "vertical_flip": False,
            "rotate": 15,
            "brightness": 0.2,
            "contrast": 1,
            "saturation": 0.0,
            "custom": {"sepia": {"strength": 0.5}, "plugins.blur": None},
        }
    )
    assert spec == TransformSpec(
        random_resized_crop=CropSpec(scale=(0.5, 1.0), ratio=(1.0, 2.0)),
        horizontal_flip=True,
        rotate=15.0,
        brightness=0.2,
        contrast=1.0,
        custom=(("sepia", {"strength": 0.5}), ("plugins.blur", {})),
    )
    assert type(spec.rotate) is float and type(spec.contrast) is float
    assert spec.random_resized_crop is not None
    assert all(type(bound) is float for bound in spec.random_resized_crop.scale)
    assert spec.plugin_names == ("sepia", "plugins.blur")


def test_crop_with_only_scale_keeps_default_ratio() -> None:
    spec = parse_augment({"random_resized_crop": {"scale": [0.3, 0.3]}})
    assert spec.random_resized_crop == CropSpec(scale=(0.3, 0.3))


def test_upper_bounds_are_inclusive() -> None:
    spec = parse_augment({"rotate": 180, "brightness": 1.0, "contrast": 1, "saturation": 1.0})
    assert (spec.rotate, spec.brightness, spec.contrast, spec.saturation) == (180.0, 1.0, 1.0, 1.0)


def test_numpy_numbers_accepted_as_python_floats() -> None:
    spec = parse_augment({"rotate": np.float64(10.0)})
    assert spec.rotate == 10.0 and type(spec.rotate) is float


def test_plugin_names_keep_order() -> None:
    spec = parse_augment({"custom": {"b": {}, "a": {}, "c.d-e_f": {}}})
    assert spec.plugin_names == ("b", "a", "c.d-e_f")


def test_custom_params_are_copied() -> None:
    params = {"strength": 0.5}
    spec = parse_augment({"custom": {"sepia": params}})
    params["strength"] = 9
    assert spec.custom == (("sepia", {"strength": 0.5}),)


def test_to_wire_is_compact() -> None:
    wire = parse_augment({"horizontal_flip": True, "rotate": 5, "vertical_flip": False}).to_wire()
    assert wire == {"horizontal_flip": True, "rotate": 5.0}


def test_from_wire_none() -> None:
    assert TransformSpec.from_wire(None) == TransformSpec()


def test_from_wire_validates() -> None:
    with pytest.raises(ConfigError, match="rotate"):
        TransformSpec.from_wire({"rotate": 1000})
    with pytest.raises(ConfigError, match="augment must be None or a dict"):
        TransformSpec.from_wire([1, 2])


# --------------------------------------------------------------------------- rejections


@pytest.mark.parametrize("augment", [True, "flip", ["horizontal_flip"], 3])
def test_augment_not_a_dict(augment: object) -> None:
    rejected(augment, "augment must be None or a dict", type(augment).__name__, "Example")


def test_unknown_key_lists_builtins_and_custom() -> None:
    message = rejected({"horizontal_flip": True, "sepia": {}}, "'sepia'", '"custom"', "--plugin")
    for name in BUILTIN_TRANSFORMS:
        assert name in message
    assert "Unknown augment key(s) ['sepia']" in message  # the valid key is not reported


def test_typo_is_reported_as_unknown() -> None:
    rejected({"horizontal_flips": True}, "Unknown augment key(s) ['horizontal_flips']")


@pytest.mark.parametrize("name", ["horizontal_flip", "vertical_flip"])
@pytest.mark.parametrize("value", [1, 0, "yes", None, 1.0])
def test_flag_must_be_bool(name: str, value: object) -> None:
    rejected({name: value}, f"augment[{name!r}]", "True or False", repr(value))


AMOUNTS = {"rotate": 180, "brightness": 1, "contrast": 1, "saturation": 1}


@pytest.mark.parametrize("name", sorted(AMOUNTS))
@pytest.mark.parametrize("value", [True, False, "0.1", None, [0.1], math.nan, math.inf])
def test_amount_must_be_a_finite_number(name: str, value: object) -> None:
    rejected({name: value}, f"augment[{name!r}]", "must be a number")


@pytest.mark.parametrize("name", sorted(AMOUNTS))
def test_amount_must_not_be_negative(name: str) -> None:
    rejected({name: -0.1}, f"augment[{name!r}]", "between 0 and", "-0.1", "0 turns it off")


@pytest.mark.parametrize("name", sorted(AMOUNTS))
def test_amount_over_upper_bound(name: str) -> None:
    upper = AMOUNTS[name]
    rejected({name: upper + 0.5}, f"augment[{name!r}]", f"between 0 and {upper}")


def test_rotate_over_180() -> None:
    rejected({"rotate": 181}, "augment['rotate']", "180 degrees", "181")


def test_brightness_over_1() -> None:
    rejected({"brightness": 1.01}, "augment['brightness']", "between 0 and 1")


@pytest.mark.parametrize(
    "augment",
    [{"rotate": 10**400}, {"random_resized_crop": {"scale": [0.5, 10**400]}}],
    ids=["rotate", "crop-scale"],
)
def test_huge_integer_is_a_config_error(augment: dict[str, Any]) -> None:
    rejected(augment)


@pytest.mark.parametrize("value", [1, 0, "yes", [0.5, 1.0], 0.5])
def test_crop_of_wrong_type(value: object) -> None:
    rejected({"random_resized_crop": value}, "augment['random_resized_crop']", "True, False")


def test_crop_unknown_key() -> None:
    rejected(
        {"random_resized_crop": {"scale": [0.5, 1], "area": [0.1, 1]}},
        "augment['random_resized_crop']",
        "'area'",
        "'scale' and/or 'ratio'",
    )


CROP_WHERE = "augment['random_resized_crop']"


@pytest.mark.parametrize(
    ("scale", "expected"),
    [
        ([0, 1], "0 < lo <= hi <= 1"),
        ([0.9, 0.1], "0 < lo <= hi <= 1"),
        ([0.5, 1.5], "0 < lo <= hi <= 1"),
        ([-0.5, 0.5], "0 < lo <= hi <= 1"),
        ([0.5], "must be a pair"),
        ([0.1, 0.5, 1.0], "must be a pair"),
        (0.5, "must be a pair"),
        ("0.1,1", "must be a pair"),
        ({"lo": 0.1, "hi": 1}, "must be a pair"),
        ([0.1, "1"], "two finite numbers"),
        ([True, 1], "two finite numbers"),
        ([0.1, math.nan], "two finite numbers"),
        ([0.1, math.inf], "two finite numbers"),
    ],
)
def test_crop_scale_invalid(scale: object, expected: str) -> None:
    rejected({"random_resized_crop": {"scale": scale}}, f"{CROP_WHERE}['scale']", expected)


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [
        ([0, 1], "0 < lo <= hi <= infinity"),
        ([2, 1], "0 < lo <= hi <= infinity"),
        ([-1, 1], "0 < lo <= hi <= infinity"),
        ([1], "must be a pair"),
        ([1, math.inf], "two finite numbers"),
        ([None, 1], "two finite numbers"),
    ],
)
def test_crop_ratio_invalid(ratio: object, expected: str) -> None:
    rejected({"random_resized_crop": {"ratio": ratio}}, f"{CROP_WHERE}['ratio']", expected)


def test_crop_ratio_may_exceed_one() -> None:
    spec = parse_augment({"random_resized_crop": {"ratio": [0.25, 4]}})
    assert spec.random_resized_crop == CropSpec(ratio=(0.25, 4.0))


@pytest.mark.parametrize("custom", [["sepia"], "sepia", 1, True])
def test_custom_not_a_dict(custom: object) -> None:
    rejected({"custom": custom}, 'augment["custom"]', "must map transform names", "Example")


@pytest.mark.parametrize(
    "name", ["", "1sepia", "has space", "a/b", "x" * 65, "sépia", 3, None, ("a",)]
)
def test_custom_bad_name(name: object) -> None:
    rejected({"custom": {name: {}}}, "Custom transform name", repr(name), "letters, digits")


def test_custom_name_length_limit() -> None:
    assert parse_augment({"custom": {"x" * 64: {}}}).plugin_names == ("x" * 64,)


@pytest.mark.parametrize("params", [[1, 2], "strength=1", 0.5, True, {1: "a"}, {("k",): 1}])
def test_custom_params_not_a_keyword_dict(params: object) -> None:
    rejected({"custom": {"sepia": params}}, "augment[\"custom\"]['sepia']", "dict of keyword")


def test_custom_huge_params() -> None:
    rejected(
        {"custom": {"sepia": {"lut": list(range(2000))}}},
        "augment[\"custom\"]['sepia']",
        "larger than 4096 bytes",
        "inside the plugin",
    )


@pytest.mark.parametrize(
    "value", [np.float32(0.5), object(), {1, 2}], ids=["numpy-scalar", "object", "set"]
)
def test_custom_params_must_travel(value: object) -> None:
    try:
        spec = parse_augment({"custom": {"sepia": {"strength": value}}})
    except ConfigError:
        return  # rejected up front: fine
    msgpack.packb(spec.to_wire())  # otherwise it must be sendable


# --------------------------------------------------------------------------- round trips

finite = st.floats(allow_nan=False, allow_infinity=False)
unit = st.floats(min_value=0.0, max_value=1.0)
intervals_in_unit = st.tuples(
    st.floats(min_value=1e-6, max_value=1.0), st.floats(min_value=1e-6, max_value=1.0)
).map(sorted)
ratios = st.tuples(
    st.floats(min_value=1e-3, max_value=1e3), st.floats(min_value=1e-3, max_value=1e3)
).map(sorted)
crops = (
    st.none()
    | st.just(True)
    | st.fixed_dictionaries({}, optional={"scale": intervals_in_unit, "ratio": ratios})
)
plugin_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
param_values = (
    st.none() | st.booleans() | st.integers(-(2**31), 2**31) | finite | st.text(max_size=8)
)
custom = st.dictionaries(
    plugin_names, st.dictionaries(st.text(max_size=8), param_values, max_size=4), max_size=3
)
augments = st.fixed_dictionaries(
    {},
    optional={
        "random_resized_crop": crops,
        "horizontal_flip": st.booleans(),
        "vertical_flip": st.booleans(),
        "rotate": st.floats(min_value=0, max_value=180) | st.integers(0, 180),
        "brightness": unit,
        "contrast": unit,
        "saturation": unit,
        "custom": custom,
    },
)


@settings(max_examples=300, deadline=None)
@given(augments)
def test_wire_roundtrip(augment: dict[str, Any]) -> None:
    spec = parse_augment(augment)
    assert TransformSpec.from_wire(spec.to_wire()) == spec
    through_msgpack = msgpack.unpackb(msgpack.packb(spec.to_wire()))
    assert TransformSpec.from_wire(through_msgpack) == spec
    assert spec.plugin_names == tuple(augment.get("custom", {}))


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*BUILTIN_TRANSFORMS, "custom", "other"]),
        st.none()
        | st.booleans()
        | st.integers(-(2**60), 2**60)
        | st.floats()
        | st.text(max_size=4)
        | st.lists(st.floats() | st.integers(-5, 5), max_size=3)
        | st.dictionaries(st.text(max_size=6), st.floats() | st.none(), max_size=3),
        max_size=4,
    )
)
def test_parse_accepts_or_raises_config_error(augment: dict[str, Any]) -> None:
    """Whatever a user passes, the answer is a spec or a ConfigError."""
    try:
        spec = parse_augment(augment)
    except ConfigError as exc:
        assert str(exc)
    else:
        assert TransformSpec.from_wire(spec.to_wire()) == spec

"""Loading custom transforms from plugin modules, and applying them."""

from __future__ import annotations

import pathlib
import sys
import textwrap
from collections.abc import Iterator

import numpy as np
import pytest

from tests import plugin_example
from tests.images import write_image
from zerofeed.common.errors import BadSampleError, ConfigError
from zerofeed.common.transforms import parse_augment
from zerofeed.producer.plugins import load_plugins
from zerofeed.producer.render import Renderer

EXAMPLE = "tests.plugin_example"


@pytest.fixture
def plugin_dir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pathlib.Path]:
    """A directory on sys.path for throw-away plugin modules, unloaded again afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("zf_plugin_"):
            del sys.modules[name]


def _write_module(directory: pathlib.Path, name: str, source: str) -> str:
    (directory / f"{name}.py").write_text(textwrap.dedent(source))
    return name


def test_load_example_plugin() -> None:
    transforms = load_plugins([EXAMPLE])
    assert transforms == plugin_example.ZEROFEED_TRANSFORMS
    assert transforms is not plugin_example.ZEROFEED_TRANSFORMS  # a copy, no shared state


def test_no_modules_loads_nothing() -> None:
    assert load_plugins([]) == {}


def test_two_modules_merge(plugin_dir: pathlib.Path) -> None:
    other = _write_module(
        plugin_dir,
        "zf_plugin_other",
        "ZEROFEED_TRANSFORMS = {'identity': lambda image, rng: image}\n",
    )
    assert sorted(load_plugins([EXAMPLE, other])) == ["identity", "invert", "posterize"]


def test_module_that_cannot_be_imported() -> None:
    with pytest.raises(
        ConfigError, match=r"Cannot import plugin module 'zf_no_such_module'.*--plugin"
    ):
        load_plugins(["zf_no_such_module"])


def test_module_that_fails_while_importing(plugin_dir: pathlib.Path) -> None:
    name = _write_module(plugin_dir, "zf_plugin_broken", "raise RuntimeError('boom at import')\n")
    with pytest.raises(ConfigError, match="RuntimeError: boom at import"):
        load_plugins([name])


def test_module_without_transforms(plugin_dir: pathlib.Path) -> None:
    name = _write_module(plugin_dir, "zf_plugin_empty", "VALUE = 1\n")
    with pytest.raises(
        ConfigError, match=r"must define a module-level dict ZEROFEED_TRANSFORMS.*has none"
    ):
        load_plugins([name])


def test_transforms_that_are_not_a_mapping(plugin_dir: pathlib.Path) -> None:
    name = _write_module(plugin_dir, "zf_plugin_list", "ZEROFEED_TRANSFORMS = [print]\n")
    with pytest.raises(ConfigError, match="has a list"):
        load_plugins([name])


def test_value_that_is_not_callable(plugin_dir: pathlib.Path) -> None:
    name = _write_module(plugin_dir, "zf_plugin_value", "ZEROFEED_TRANSFORMS = {'blur': 3}\n")
    with pytest.raises(ConfigError, match=r"ZEROFEED_TRANSFORMS\['blur'\] must map .* got int 3"):
        load_plugins([name])


def test_same_name_in_two_modules(plugin_dir: pathlib.Path) -> None:
    clash = _write_module(
        plugin_dir,
        "zf_plugin_clash",
        "ZEROFEED_TRANSFORMS = {'invert': lambda image, rng: image}\n",
    )
    with pytest.raises(
        ConfigError,
        match=r"'invert' is defined by both plugin 'tests.plugin_example' and plugin 'zf_plugin_cl",
    ):
        load_plugins([EXAMPLE, clash])


def test_a_single_string_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"write \['tests.plugin_example'\]"):
        load_plugins(EXAMPLE)


def _render(path: pathlib.Path, augment: dict, transforms: dict, seed: int = 0) -> np.ndarray:
    renderer = Renderer(image_size=(24, 32), spec=parse_augment(augment), transforms=transforms)
    out = np.zeros((24, 32, 3), np.uint8)
    renderer.render_into(path, np.random.default_rng(seed), out)
    return out


def test_custom_transforms_apply_in_order_with_params(tmp_path: pathlib.Path) -> None:
    path = write_image(tmp_path / "p.png")
    transforms = load_plugins([EXAMPLE])
    plain = _render(path, {}, transforms)
    inverted = _render(path, {"custom": {"invert": {}}}, transforms)
    assert np.array_equal(inverted, 255 - plain)
    both = _render(path, {"custom": {"invert": {}, "posterize": {"bits": 2}}}, transforms)
    assert np.array_equal(both, (255 - plain) & 0b11000000)
    # the other order: posterize, then the array is handed to invert as an image
    reverse = _render(path, {"custom": {"posterize": {"bits": 2}, "invert": {}}}, transforms)
    assert np.array_equal(reverse, 255 - (plain & 0b11000000))


def test_custom_transform_draws_from_the_sample_rng(tmp_path: pathlib.Path) -> None:
    path = write_image(tmp_path / "p.png")
    transforms = load_plugins([EXAMPLE])
    augment = {"custom": {"invert": {"probability": 0.5}}}
    plain = _render(path, {}, transforms)
    results = [_render(path, augment, transforms, seed) for seed in range(12)]
    for seed, result in enumerate(results):
        inverted = np.random.default_rng(seed).random() < 0.5
        assert np.array_equal(result, 255 - plain if inverted else plain)
    assert len({result.tobytes() for result in results}) == 2


def test_missing_custom_transform_is_a_config_error() -> None:
    spec = parse_augment({"custom": {"sepia": {}}})
    with pytest.raises(
        ConfigError, match=r"\['sepia'\].*loaded: invert, posterize.*--plugin MODULE"
    ):
        Renderer(image_size=(8, 8), spec=spec, transforms=load_plugins([EXAMPLE]))
    with pytest.raises(ConfigError, match="loaded: none"):
        Renderer(image_size=(8, 8), spec=spec)


def _raises(image: object, rng: object) -> object:
    raise RuntimeError("plugin bug")


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (_raises, "raised RuntimeError: plugin bug"),
        (lambda image, rng: None, "returned a NoneType"),
        (lambda image, rng: image.convert("L"), "returned a PIL image of mode 'L'"),
        (lambda image, rng: image.resize((5, 5)), r"size \(5, 5\)"),
        (lambda image, rng: np.asarray(image).astype(np.float32), "dtype float32"),
        (lambda image, rng: np.asarray(image)[:, :, 0], r"shape \(24, 32\)"),
    ],
)
def test_failing_custom_transform_is_a_bad_sample(
    tmp_path: pathlib.Path, fn: object, message: str
) -> None:
    path = write_image(tmp_path / "p.png")
    with pytest.raises(BadSampleError, match=message) as caught:
        _render(path, {"custom": {"bad": {}}}, {"bad": fn})
    assert caught.value.kind == "transform"
    assert caught.value.path == str(path)
    assert "'bad'" in caught.value.reason

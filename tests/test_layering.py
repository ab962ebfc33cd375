"""The package's layering: common imports no side, producers never import Keras, what ships.

- ``zerofeed.common`` imports neither PIL, Keras, TensorFlow, nor ``zerofeed.producer``/``consumer``;
- ``zerofeed.producer`` never imports Keras, TensorFlow or ``zerofeed.consumer``;
- ``zerofeed.consumer`` never imports ``zerofeed.producer`` (it starts producers as processes);
- the distribution ships the one top-level package ``zerofeed``; public modules pin ``__all__``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import json
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "zerofeed"

FORBIDDEN = {
    "common": ("PIL", "keras", "tensorflow", "zerofeed.producer", "zerofeed.consumer"),
    "producer": ("keras", "tensorflow", "zerofeed.consumer"),
    "consumer": ("zerofeed.producer",),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module ``source`` imports, anywhere in it, relative imports resolved.

    ``from a import b`` yields ``a`` and ``a.b`` (``b`` may be a submodule);
    ``importlib.import_module("x")`` and ``__import__("x")`` with a literal yield ``x``.
    """
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                parent = ".".join([*base, node.module] if node.module else base)
            else:
                parent = node.module or ""
            names.add(parent)
            names.update(f"{parent}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0]
            literal = isinstance(first, ast.Constant) and isinstance(first.value, str)
            if called in ("import_module", "__import__") and literal:
                names.add(first.value)
    return names


def violations(names: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        name for name in names for bad in forbidden if name == bad or name.startswith(bad + ".")
    )


def layered_modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        layer = path.relative_to(PACKAGE).parts[0]
        if layer in FORBIDDEN:
            found.append((layer, path))
    return found


KERAS_ADAPTERS = {"sequence.py", "checkpoint.py", "monitor.py"}  # the only Keras users
TF_ADAPTERS = {"tfdata.py"}  # the only TensorFlow user


@pytest.mark.parametrize(
    "path",
    sorted((PACKAGE / "consumer").glob("*.py")),
    ids=lambda path: path.name,
)
def test_only_the_adapters_import_keras_or_tensorflow(path: Path) -> None:
    """The engine and the torch adapter run without Keras: keras only in the Keras adapters."""
    names = imported_names(
        path.read_text(encoding="utf-8"), module_name(path), is_package=path.name == "__init__.py"
    )
    forbidden = (
        () if path.name in KERAS_ADAPTERS else ("keras",),
        () if path.name in TF_ADAPTERS else ("tensorflow",),
    )
    bad = violations(names, forbidden[0] + forbidden[1])
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_every_layer_has_modules() -> None:
    layers = {layer for layer, _ in layered_modules()}
    assert layers == set(FORBIDDEN)
    assert len(layered_modules()) >= 15


@pytest.mark.parametrize(
    ("layer", "path"),
    layered_modules(),
    ids=[str(path.relative_to(ROOT)) for _, path in layered_modules()],
)
def test_layer_imports(layer: str, path: Path) -> None:
    names = imported_names(
        path.read_text(encoding="utf-8"), module_name(path), is_package=path.name == "__init__.py"
    )
    bad = violations(names, FORBIDDEN[layer])
    assert not bad, f"{path.relative_to(ROOT)} ({layer}) imports {bad}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import keras", ["keras"]),
        ("import tensorflow.compat.v1 as tf", ["tensorflow.compat.v1"]),
        ("from PIL import Image", ["PIL", "PIL.Image"]),
        ("def f():\n    import keras\n", ["keras"]),
        ("from ..producer import render", ["zerofeed.producer", "zerofeed.producer.render"]),
        ("from .. import consumer", ["zerofeed.consumer"]),
        ("importlib.import_module('keras.layers')", ["keras.layers"]),
        ("__import__('tensorflow')", ["tensorflow"]),
        ("import kerasx, PILLOW", []),
        ("from . import errors", []),
    ],
)
def test_scanner_catches_forbidden_imports(source: str, expected: list[str]) -> None:
    """The scan above can fail: each of these is reported for a module in common."""
    names = imported_names(source, "zerofeed.common.example")
    assert violations(names, FORBIDDEN["common"]) == expected


def test_relative_import_in_package_init_resolves_to_the_package() -> None:
    names = imported_names("from .plan import EpochPlan", "zerofeed.common", is_package=True)
    assert "zerofeed.common.plan" in names


# --------------------------------------------------------------------------- runtime imports

PRODUCER_SIDE = [
    "zerofeed.producer.cli",
    "zerofeed.producer.supervisor",
    "zerofeed.producer.worker",
    "zerofeed.producer.batch",
    *sorted(
        module_name(path)
        for path in (PACKAGE / "common").glob("*.py")
        if path.name != "__init__.py"
    ),
]

PROBE = """
import importlib, json, sys
names = json.loads(sys.argv[1])
for name in names:
    importlib.import_module(name)
print(json.dumps({
    "imported": [name for name in names if name in sys.modules],
    "heavy": sorted(m for m in sys.modules if m.split(".")[0] in ("keras", "tensorflow")),
}))
"""


def test_producer_side_imports_no_keras_or_tensorflow() -> None:
    assert "zerofeed.common.protocol" in PRODUCER_SIDE  # the glob found the common modules
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(PRODUCER_SIDE)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["imported"] == PRODUCER_SIDE
    assert report["heavy"] == []


def test_probe_detects_keras() -> None:
    """The probe above sees a heavy import when there is one."""
    pytest.importorskip("keras")
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(["zerofeed.consumer.sequence"])],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert "keras" in report["heavy"]


# --------------------------------------------------------------------------- what ships

STRAY = {"common", "tests", "bench", "examples", "docs", "dev", "producer", "consumer"}


def test_pyproject_ships_only_zerofeed() -> None:
    from setuptools import find_packages

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    find = config["tool"]["setuptools"]["packages"]["find"]
    include = find.get("include")
    assert include, "use an allow-list (include=...), not find_packages(exclude=...)"
    packages = find_packages(where=str(ROOT), include=include, exclude=find.get("exclude", ()))
    assert {"zerofeed", "zerofeed.common", "zerofeed.producer", "zerofeed.consumer"} <= set(
        packages
    )
    assert {package.split(".")[0] for package in packages} == {"zerofeed"}
    # without the allow-list the repository's other packages would be picked up
    assert "tests" in find_packages(where=str(ROOT))


def test_installed_distribution_has_one_top_level_package() -> None:
    # The installed distribution, not a zerofeed.egg-info an in-tree build may leave on sys.path.
    site_packages = sysconfig.get_paths()["purelib"]
    (distribution,) = importlib.metadata.distributions(name="zerofeed", path=[site_packages])
    top_level = distribution.read_text("top_level.txt")
    if top_level is not None:
        assert top_level.split() == ["zerofeed"]
    shipped = {
        Path(str(file)).parts[0]
        for file in distribution.files or ()
        if str(file).endswith(".py") and not Path(str(file)).name.startswith("__editable__")
    }
    assert not shipped & STRAY
    assert shipped <= {"zerofeed"}


# --------------------------------------------------------------------------- public API

PUBLIC = [
    "zerofeed.common.errors",
    "zerofeed.common.protocol",
    "zerofeed.common.transforms",
    "zerofeed.common.plan",
    "zerofeed.common.manifest",
    "zerofeed.consumer",
]


@pytest.mark.parametrize("name", PUBLIC)
def test_all_names_exist(name: str) -> None:
    if name == "zerofeed.consumer":
        pytest.importorskip("keras")
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported, f"{name}.__all__ is empty"
    assert len(set(exported)) == len(exported), f"{name}.__all__ has duplicates"
    missing = [attr for attr in exported if not hasattr(module, attr)]
    assert not missing, f"{name}.__all__ names missing attributes: {missing}"


@pytest.mark.parametrize("name", [n for n in PUBLIC if n != "zerofeed.consumer"])
def test_all_covers_public_definitions(name: str) -> None:
    """Every public class or function defined in a common module is exported."""
    module = importlib.import_module(name)
    defined = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and getattr(value, "__module__", None) == name
        and (isinstance(value, type) or callable(value))
    }
    assert defined <= set(module.__all__), f"not in {name}.__all__: {defined - set(module.__all__)}"

"""Plugin modules: importable modules with a ``ZEROFEED_TRANSFORMS`` table of custom transforms.

A plugin is an importable module with a module-level mapping ``ZEROFEED_TRANSFORMS`` from a
transform name to a callable::

    # mytransforms.py
    def sepia(image, rng, *, strength=1.0):
        ...  # return a PIL RGB image (or an (H, W, 3) uint8 array) of the same size

    ZEROFEED_TRANSFORMS = {"sepia": sepia}

Producers started with ``--plugin mytransforms`` call :func:`load_plugins`, and a spec's
``{"custom": {"sepia": {"strength": 0.5}}}`` then calls ``sepia(image, rng, strength=0.5)``. A
consumer that starts local producers calls it too, at construction, so that a transform no local
producer has is an error before anything starts. There is no global registry: the returned dict is
the only record of what was loaded.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from zerofeed.common.errors import ConfigError

__all__ = ["PLUGIN_ATTRIBUTE", "load_plugins"]

PLUGIN_ATTRIBUTE = "ZEROFEED_TRANSFORMS"


def load_plugins(modules: Sequence[str]) -> dict[str, Callable[..., Any]]:
    """Import each module and collect its ``ZEROFEED_TRANSFORMS`` into one ``{name: callable}``.

    Raises:
        ConfigError: a module cannot be imported, has no ``ZEROFEED_TRANSFORMS`` mapping, maps a
            name to something not callable, or defines a name another module already defined.
    """
    if isinstance(modules, str):
        raise ConfigError(
            f"load_plugins expects a list of module names, got the string {modules!r}; "
            f"write [{modules!r}]."
        )
    loaded: dict[str, Callable[..., Any]] = {}
    origin: dict[str, str] = {}
    for module_name in modules:
        for name, fn in _transforms_of(module_name).items():
            if name in loaded:
                raise ConfigError(
                    f"Custom transform {name!r} is defined by both plugin {origin[name]!r} and "
                    f"plugin {module_name!r}; rename one of them or load only one of the modules."
                )
            loaded[name] = fn
            origin[name] = module_name
    return loaded


def _transforms_of(module_name: str) -> dict[str, Callable[..., Any]]:
    module = _import(module_name)
    table = getattr(module, PLUGIN_ATTRIBUTE, None)
    if not isinstance(table, Mapping):
        found = "has none" if table is None else f"has a {type(table).__name__}"
        raise ConfigError(
            f"Plugin module {module_name!r} ({getattr(module, '__file__', '?')}) must define a "
            f"module-level dict {PLUGIN_ATTRIBUTE} = {{name: function}}, but it {found}."
        )
    transforms: dict[str, Callable[..., Any]] = {}
    for name, fn in table.items():
        if not isinstance(name, str) or not callable(fn):
            raise ConfigError(
                f"{module_name}.{PLUGIN_ATTRIBUTE}[{name!r}] must map a string name to a function "
                f"fn(image, rng, **params), got {type(fn).__name__} {fn!r}."
            )
        transforms[name] = fn
    return transforms


def _import(module_name: str) -> object:
    if not isinstance(module_name, str) or not module_name:
        raise ConfigError(
            f"A plugin must be named by its importable module name, got {module_name!r}."
        )
    try:
        return importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(
            f"Cannot import plugin module {module_name!r}: {type(exc).__name__}: {exc}. "
            "Pass the dotted name of a module importable by the producer (on its PYTHONPATH or "
            "installed), e.g. --plugin mypackage.transforms."
        ) from exc

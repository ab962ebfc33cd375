"""Byte identity with Pillow holds on the lowest Pillow that ``pyproject.toml`` allows, too.

The producer's fast paths reproduce Pillow's decoding and resize arithmetic byte for byte, and
the rest of this suite checks that against the Pillow installed here (the newest the bound
allows). This test runs the identity tests again in a child process that imports the lowest
allowed Pillow instead, installed from the package index into a folder put first on its path.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import tomllib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
# Where the fast paths and Pillow must agree: windowed decode, resize, rendering, decoding.
IDENTITY_TESTS = ["tests/test_accelerators.py", "tests/test_render.py", "tests/test_decode.py"]

pytestmark = pytest.mark.slow


def pillow_bounds() -> tuple[str, str]:
    """(lowest, first excluded) Pillow versions of the project's dependency."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (spec,) = [d for d in project["dependencies"] if d.lower().startswith("pillow")]
    match = re.fullmatch(r"pillow>=([\d.]+),<([\d.]+)", spec.replace(" ", ""), re.IGNORECASE)
    if match is None:
        raise AssertionError(f"Pillow must have a tested lower and upper bound, got {spec!r}")
    return match[1], match[2]


def test_the_installed_pillow_is_within_the_bound() -> None:
    import PIL

    lowest, excluded = pillow_bounds()

    def version(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in text.split(".")[:3])

    assert version(lowest) <= version(PIL.__version__) < version(excluded)


def test_identity_tests_pass_on_the_lowest_allowed_pillow(tmp_path: pathlib.Path) -> None:
    lowest, _ = pillow_bounds()
    overlay = tmp_path / f"pillow-{lowest}"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    install = subprocess.run(
        [*pip, "--no-deps", "--only-binary=:all:", "--target", str(overlay), f"pillow=={lowest}"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(overlay), str(REPO)])}
    probe = subprocess.run(
        [sys.executable, "-c", "import PIL; print(PIL.__version__, PIL.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.split()[0] == lowest, probe.stdout
    assert pathlib.Path(probe.stdout.split()[1]).is_relative_to(overlay)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *IDENTITY_TESTS],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:]
    assert re.search(r"\d+ passed", run.stdout), run.stdout[-1000:]

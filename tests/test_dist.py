"""Release files: the wheel from ``./dev dist`` carries its accelerators and their libjpeg-turbo.

The wheel is built with the script users run (``scripts/build-dist``), installed into a fresh
virtual environment inside a private mount namespace where the machine has no libjpeg, no
libjpeg headers and no working C compiler, and a producer's renderer from it must take the
accelerated path and make the very bytes the source tree makes.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from zerofeed.common.plan import sample_rng
from zerofeed.common.transforms import parse_augment
from zerofeed.producer.render import Renderer

REPO = pathlib.Path(__file__).resolve().parent.parent
AUGMENT = {"random_resized_crop": {"scale": [0.35, 1.0]}, "horizontal_flip": True}
SIZE = (96, 112)

pytestmark = pytest.mark.slow

# What the machine must lose for the check to mean something: the libjpeg the accelerators were
# linked against, the headers they were built from, and the compiler's own programs.
_SYSTEM_LIBJPEG = pathlib.Path("/usr/lib/x86_64-linux-gnu/libjpeg.so.62")

# Renders every image with the installed zerofeed; prints the decode path and a digest per image.
_RENDER = """
import hashlib, json, sys, pathlib
import numpy as np
import zerofeed.producer.accelerators as accelerators
from zerofeed.common.plan import sample_rng
from zerofeed.common.transforms import parse_augment
from zerofeed.producer.render import Renderer
augment, size, paths = json.loads(sys.argv[1])
renderer = Renderer(image_size=tuple(size), spec=parse_augment(augment))
digests = []
for index, path in enumerate(paths):
    out = np.zeros((*size, 3), np.uint8)
    renderer.render_into(pathlib.Path(path), sample_rng(7, 0, index), out)
    digests.append(hashlib.sha256(out.tobytes()).hexdigest())
maps = pathlib.Path("/proc/self/maps").read_text().splitlines()
libjpeg = sorted({line.split()[-1] for line in maps if "libjpeg" in line})
print(json.dumps({"module": accelerators.__file__, "path": accelerators.decode_path().summary,
                  "accelerated": accelerators.decode_path().accelerated,
                  "libjpeg": libjpeg, "digests": digests}))
"""


def _photos(folder: pathlib.Path) -> list[pathlib.Path]:
    """Photo-like JPEGs of several sizes and chroma subsamplings, one progressive."""
    rng = np.random.default_rng(3)
    paths = []
    for index, (width, height, subsampling, progressive) in enumerate(
        [(640, 480, 2, False), (333, 517, 1, False), (1024, 768, 0, False), (401, 299, 2, True)]
    ):
        coarse = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
        path = folder / f"photo{index}.jpg"
        image.save(path, "JPEG", quality=90, subsampling=subsampling, progressive=progressive)
        paths.append(path)
    return paths


def _render_here(paths: list[pathlib.Path]) -> list[str]:
    renderer = Renderer(image_size=SIZE, spec=parse_augment(AUGMENT))
    digests = []
    for index, path in enumerate(paths):
        out = np.zeros((*SIZE, 3), np.uint8)
        renderer.render_into(path, sample_rng(7, 0, index), out)
        digests.append(hashlib.sha256(out.tobytes()).hexdigest())
    return digests


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        [str(REPO / "scripts" / "build-dist"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_the_sdist_holds_what_a_build_from_it_needs(dist: pathlib.Path) -> None:
    (sdist,) = dist.glob("zerofeed-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in (
        "pyproject.toml",
        "setup.py",
        "LICENSE",
        "CHANGELOG.md",
        "zerofeed/producer/_jpegwindow.c",
        "zerofeed/producer/_jpeg_huffman.h",
        "zerofeed/producer/_jpeg_progressive.h",
        "zerofeed/producer/_resample.c",
        "zerofeed/producer/_resample_core.h",
    ):
        assert needed in names, f"{needed} missing from {sdist.name}"


def test_the_wheel_carries_its_accelerators_and_libjpeg(dist: pathlib.Path) -> None:
    (wheel,) = dist.glob("zerofeed-*.whl")
    assert "manylinux" in wheel.name, wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("_jpegwindow", "_resample"):
        assert any(n.startswith(f"zerofeed/producer/{module}.") for n in names), names
    assert any(n.startswith("zerofeed.libs/libjpeg") for n in names), names
    assert any(n.endswith("/licenses/LICENSE") or n.endswith("/LICENSE") for n in names)


def _can_unshare_mounts() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(
    not _can_unshare_mounts(), reason="hiding system files needs a mount namespace (root)"
)
def test_the_wheel_renders_the_source_trees_bytes_without_libjpeg_or_a_compiler(
    dist: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    (wheel,) = dist.glob("zerofeed-*.whl")
    paths = _photos(tmp_path)
    expected = _render_here(paths)

    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    fresh_python = venv / "bin" / "python"
    # zerofeed from the wheel alone; its dependencies (numpy, Pillow, ...) from this test's own
    # environment, put on the path by a .pth file (one that does not load this editable zerofeed).
    site = pathlib.Path(
        subprocess.run(
            [str(fresh_python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    hidden = [f"mount -t tmpfs none {folder}" for folder in ("/usr/include", "/usr/lib/gcc")]
    hidden.append(f"mount --bind /dev/null {_SYSTEM_LIBJPEG.resolve()}")
    script = " && ".join(
        [
            *hidden,
            # the machine is now one with no compiler, no libjpeg headers and no libjpeg
            "! echo 'int main(void){return 0;}' | cc -x c -o /dev/null - 2>/dev/null",
            "! test -s /usr/include/jpeglib.h",
            f"{sys.executable} -m pip --python {fresh_python} install --quiet --no-deps "
            f"--no-index --disable-pip-version-check {wheel}",
            f'{fresh_python} -I -c "$RENDER" "$ARGS"',  # -I: nothing from the cwd
        ]
    )
    args = json.dumps([AUGMENT, list(SIZE), [str(p) for p in paths]])
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-ec", script],
        cwd=tmp_path,
        env={**os.environ, "RENDER": _RENDER, "ARGS": args, "PYTHONPATH": ""},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert pathlib.Path(seen["module"]).is_relative_to(venv), seen["module"]
    assert seen["accelerated"], seen["path"]
    # the accelerators' libjpeg is the wheel's own (Pillow's wheel brings another, for Pillow)
    assert any("/zerofeed.libs/libjpeg" in lib for lib in seen["libjpeg"]), seen["libjpeg"]
    assert not any(lib.startswith("/usr/") for lib in seen["libjpeg"]), seen["libjpeg"]
    assert seen["digests"] == expected

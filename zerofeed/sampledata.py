"""A small synthetic image data set for the demo, the docker one-shot service and the tests.

Each class has a dominant hue, and its foreground blob is filled with stripes of its own orientation
(in [0, 90] degrees, so flips never turn one class into another) and frequency. Blob position and
size, background colour and noise are random, so a model has to learn the classes rather than copy
pixels. Run ``python -m zerofeed.sampledata DIR`` to write one.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from zerofeed.common.errors import ConfigError, ZerofeedError

__all__ = ["SampleDataset", "main", "make_sample_dataset"]

MARKER_NAME = "zerofeed-sample.json"
_FORMAT_VERSION = 1
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp"}
_JPEG_QUALITY = 92


@dataclass(frozen=True)
class SampleDataset:
    """Where a sample data set lies.

    Attributes:
        root: the folder holding ``<class_name>/<i>.<ext>``, ``train.csv`` and ``val.csv``.
        train_csv: ``path,label`` rows (label = class name, path relative to ``root``).
        val_csv: the same for the validation split.
        class_names: sorted class names.
        num_images: number of images in both splits together.
    """

    root: Path
    train_csv: Path
    val_csv: Path
    class_names: tuple[str, ...]
    num_images: int


@dataclass(frozen=True)
class _Args:
    classes: int
    per_class: int
    image_size: tuple[int, int]
    val_fraction: float
    seed: int
    fmt: str

    def to_json(self) -> str:
        record = {"zerofeed_sample_format": _FORMAT_VERSION, **asdict(self)}
        record["image_size"] = list(self.image_size)
        return json.dumps(record, indent=2, sort_keys=True) + "\n"


def make_sample_dataset(
    root: Path,
    *,
    classes: int = 4,
    per_class: int = 64,
    image_size: tuple[int, int] = (96, 96),
    val_fraction: float = 0.25,
    seed: int = 0,
    fmt: str = "JPEG",
) -> SampleDataset:
    """Write a synthetic, class-separable image data set under ``root`` and return where it lies.

    Images go to ``root/<class_name>/<i>.jpg`` (``.png``/``.bmp`` for other ``fmt``), of
    ``image_size`` = ``(height, width)``. ``root/train.csv`` and ``root/val.csv`` split each class
    by ``val_fraction`` (at least one image of each class in each split). The same arguments give
    byte-identical files; if ``root`` already holds a data set made with the same arguments it is
    returned without rewriting anything.

    Raises:
        ConfigError: an argument is out of range, or ``root`` holds a sample data set made with
            other arguments.
    """
    args = _validated_args(classes, per_class, image_size, val_fraction, seed, fmt)
    root = Path(root)
    names = _class_names(args.classes)
    dataset = SampleDataset(
        root=root,
        train_csv=root / "train.csv",
        val_csv=root / "val.csv",
        class_names=names,
        num_images=args.classes * args.per_class,
    )
    if _already_made(root, args, dataset):
        return dataset
    _write_dataset(root, args, names)
    return dataset


def _validated_args(
    classes: int,
    per_class: int,
    image_size: tuple[int, int],
    val_fraction: float,
    seed: int,
    fmt: str,
) -> _Args:
    _check_int("classes", classes, 1)
    _check_int("per_class", per_class, 2)
    _check_int("seed", seed, 0)
    if len(image_size) != 2:
        raise ConfigError(f"image_size must be (height, width), got {image_size!r}.")
    for side in image_size:
        _check_int("image_size", side, 8)
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}.")
    fmt_upper = fmt.upper()
    if fmt_upper not in _EXTENSIONS:
        raise ConfigError(f"fmt must be one of {', '.join(_EXTENSIONS)}, got {fmt!r}.")
    size = (int(image_size[0]), int(image_size[1]))
    return _Args(classes, per_class, size, float(val_fraction), seed, fmt_upper)


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def _class_names(classes: int) -> tuple[str, ...]:
    width = max(2, len(str(classes - 1)))
    return tuple(f"class_{k:0{width}d}" for k in range(classes))


def _already_made(root: Path, args: _Args, dataset: SampleDataset) -> bool:
    marker = root / MARKER_NAME
    if not marker.is_file():
        return False
    if marker.read_text(encoding="utf-8") != args.to_json():
        raise ConfigError(
            f"{root} already holds a sample data set made with other arguments (see {marker}). "
            "Choose another folder, or delete this one to rebuild it."
        )
    return dataset.train_csv.is_file() and dataset.val_csv.is_file()


def _write_dataset(root: Path, args: _Args, names: tuple[str, ...]) -> None:
    ext = _EXTENSIONS[args.fmt]
    split_rng = np.random.default_rng([args.seed, 1])
    n_val = min(max(1, round(args.per_class * args.val_fraction)), args.per_class - 1)
    train: list[str] = []
    val: list[str] = []
    for k, name in enumerate(names):
        (root / name).mkdir(parents=True, exist_ok=True)
        val_ids = set(split_rng.permutation(args.per_class)[:n_val].tolist())
        for i in range(args.per_class):
            rel = f"{name}/{i}{ext}"
            pixels = _render_image(k, args.classes, args.image_size, _image_rng(args.seed, k, i))
            _save(pixels, root / rel, args.fmt)
            (val if i in val_ids else train).append(f"{rel},{name}")
    _write_text(root / "train.csv", "path,label\n" + "".join(r + "\n" for r in train))
    _write_text(root / "val.csv", "path,label\n" + "".join(r + "\n" for r in val))
    _write_text(root / MARKER_NAME, args.to_json())


def _image_rng(seed: int, k: int, i: int) -> np.random.Generator:
    return np.random.default_rng([seed, 0, k, i])


def _save(pixels: np.ndarray, path: Path, fmt: str) -> None:
    image = Image.fromarray(pixels)
    options = {"quality": _JPEG_QUALITY} if fmt == "JPEG" else {}
    tmp = path.with_name(path.name + ".tmp")
    image.save(tmp, format=fmt, **options)
    os.replace(tmp, path)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8", newline="\n")
    os.replace(tmp, path)


def _render_image(
    k: int, classes: int, size: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """Draw one ``uint8`` RGB image of class ``k`` (of ``classes``), ``size`` = (height, width)."""
    h, w = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    image = _background(h, w, rng)
    mask = _blob_mask(x, y, rng)
    stripes = _stripes(k, classes, x, y, rng)
    light, dark = _class_colours(k, classes, rng)
    fg = np.where(stripes[..., None], light, dark)
    image = np.where(mask[..., None], fg, image)
    image += rng.normal(0.0, 10.0, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def _background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A dull random colour with a gentle gradient."""
    grey = rng.uniform(60, 190)
    tint = rng.uniform(-20, 20, size=3)
    gradient = np.linspace(-1, 1, w, dtype=np.float32)[None, :, None] * rng.uniform(-25, 25, 3)
    return np.broadcast_to(grey + tint + gradient, (h, w, 3)).astype(np.float32)


def _blob_mask(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An ellipse covering about a quarter to a half of the image, at a random position."""
    h, w = x.shape
    ry, rx = rng.uniform(0.28, 0.42, size=2) * (h, w)
    cy = rng.uniform(ry * 0.6, h - ry * 0.6)
    cx = rng.uniform(rx * 0.6, w - rx * 0.6)
    return _as_bool(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0)


def _stripes(
    k: int, classes: int, x: np.ndarray, y: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    angle = np.deg2rad(90.0 * k / max(1, classes - 1) + rng.uniform(-4, 4))
    period = min(x.shape) * (0.12 + 0.06 * (k % 3))
    phase = rng.uniform(0, 2 * np.pi)
    along = x * np.cos(angle) + y * np.sin(angle)
    return _as_bool(np.sin(2 * np.pi * along / period + phase) > 0)


def _class_colours(k: int, classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A saturated light and dark shade of class ``k``'s hue, slightly jittered."""
    hue = (k / classes + rng.uniform(-0.02, 0.02)) % 1.0
    light = colorsys.hsv_to_rgb(hue, rng.uniform(0.75, 1.0), rng.uniform(0.85, 1.0))
    dark = colorsys.hsv_to_rgb(hue, rng.uniform(0.75, 1.0), rng.uniform(0.45, 0.6))
    return np.array(light, np.float32) * 255, np.array(dark, np.float32) * 255


def _as_bool(values: np.ndarray) -> np.ndarray:
    """``values`` as a boolean array."""
    return np.asarray(values, dtype=bool)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m zerofeed.sampledata DIR [--classes N] [--per-class N] ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m zerofeed.sampledata",
        description="Write a small synthetic image data set (class folders + train/val CSVs).",
    )
    parser.add_argument("root", type=Path, help="folder to write (created if missing)")
    parser.add_argument("--classes", type=int, default=4, help="number of classes (default 4)")
    parser.add_argument("--per-class", type=int, default=64, help="images per class (default 64)")
    parser.add_argument(
        "--size", type=int, nargs=2, default=(96, 96), metavar=("H", "W"), help="image size"
    )
    parser.add_argument("--val-fraction", type=float, default=0.25, help="share for val.csv")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--format", default="JPEG", choices=sorted(_EXTENSIONS), dest="fmt")
    ns = parser.parse_args(argv)
    try:
        dataset = make_sample_dataset(
            ns.root,
            classes=ns.classes,
            per_class=ns.per_class,
            image_size=(ns.size[0], ns.size[1]),
            val_fraction=ns.val_fraction,
            seed=ns.seed,
            fmt=ns.fmt,
        )
    except (ZerofeedError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"{dataset.num_images} images in {len(dataset.class_names)} classes under "
        f"{dataset.root}: {dataset.train_csv.name}, {dataset.val_csv.name}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

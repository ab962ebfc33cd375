"""One producer's time per image, format by format, with and without zerofeed's C accelerators.

    .venv/bin/python -m bench.formats                    # the mixed set, 1,200 images, 3 passes
    .venv/bin/python -m bench.formats --set photos --images 600

Each variant runs in a fresh process on one core: ``accelerated`` as installed, and
``portable`` with ``_jpegwindow``, ``_pngdecode`` and ``_resample`` made unimportable (the
producer then decodes with simplejpeg / Pillow and resizes with Pillow: the same bytes). Both
render the benchmark's augmentation (random resized crop, flip, 224x224) from bytes already in
memory, so file reads are not counted; the figure per format is the best of ``--passes`` passes
over the same images, which keeps one slow moment of a noisy machine out of it.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ACCELERATORS = ("_jpegwindow", "_pngdecode", "_resample")


def _format_of(data: bytes) -> str:
    from PIL import Image, JpegImagePlugin

    with Image.open(io.BytesIO(data)) as image:
        kind = f"{image.format} {image.mode}"
        if image.format == "JPEG" and image.mode == "RGB":
            kind += {0: " 4:4:4", 1: " 4:2:2", 2: " 4:2:0"}.get(
                JpegImagePlugin.get_sampling(image), ""
            )
        if image.format == "JPEG" and image.info.get("progressive"):
            kind += " progressive"
        return kind


def _measure(manifest: Path, images: int, passes: int) -> dict[str, float]:
    """Milliseconds per image by format, best pass; runs in the variant's process."""
    import numpy as np

    from bench.config import AUGMENT, IMAGE_SIZE
    from zerofeed.common.plan import sample_rng
    from zerofeed.common.transforms import parse_augment
    from zerofeed.producer.render import Renderer

    with manifest.open() as file:
        paths = [manifest.parent / row["path"] for row in csv.DictReader(file)][:images]
    samples = [(str(path), path.read_bytes()) for path in paths]
    formats = [_format_of(data) for _, data in samples]
    renderer = Renderer(image_size=IMAGE_SIZE, spec=parse_augment(AUGMENT))
    out = np.empty((*IMAGE_SIZE, 3), np.uint8)
    best: dict[str, float] = {}
    for _ in range(passes):
        seconds: dict[str, float] = defaultdict(float)
        for row, (name, data) in enumerate(samples):
            started = time.perf_counter()
            renderer.render_bytes(name, data, sample_rng(0, 0, row), out)
            seconds[formats[row]] += time.perf_counter() - started
        for kind, total in seconds.items():
            per_image = 1e3 * total / formats.count(kind)
            best[kind] = min(best.get(kind, per_image), per_image)
    best["all"] = sum(best[kind] * formats.count(kind) for kind in set(formats)) / len(formats)
    return best


def _run_variant(variant: str, manifest: Path, images: int, passes: int) -> dict[str, float]:
    command = [sys.executable, "-m", "bench.formats", "--variant", variant]
    command += ["--manifest", str(manifest), "--images", str(images), "--passes", str(passes)]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=1800)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="mixed", choices=("photos", "large", "mixed"))
    parser.add_argument("--images", type=int, default=1200)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--variant", choices=("accelerated", "portable"), help=argparse.SUPPRESS)
    parser.add_argument("--manifest", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:  # a child: one variant, one core, a JSON line out
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        if args.variant == "portable":
            for module in ACCELERATORS:
                sys.modules[f"zerofeed.producer.{module}"] = None  # type: ignore[assignment]
        print(json.dumps(_measure(args.manifest, args.images, args.passes)))
        return
    from bench.dataset import ensure_dataset

    info = ensure_dataset(max(args.images, 3000 if args.set != "large" else 1000), kind=args.set)
    fast = _run_variant("accelerated", info.manifest, args.images, args.passes)
    slow = _run_variant("portable", info.manifest, args.images, args.passes)
    print(f"{args.set} set, first {args.images} images, ms per image (best of {args.passes}):")
    print("| format | accelerated | portable | portable ÷ accelerated |")
    print("|---|---|---|---|")
    for kind in sorted(fast, key=lambda k: (k == "all", k)):
        print(f"| {kind} | {fast[kind]:.2f} | {slow[kind]:.2f} | {slow[kind] / fast[kind]:.2f}x |")


if __name__ == "__main__":
    main()

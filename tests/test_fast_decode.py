"""The simplejpeg fast path gives exactly Pillow's pixels, so mixed producers agree."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zerofeed.common.plan import sample_rng
from zerofeed.common.transforms import parse_augment
from zerofeed.producer import decode
from zerofeed.producer.render import Renderer

pytest.importorskip("simplejpeg")


def photo(size: tuple[int, int], seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (size[1] // 8 + 1, size[0] // 8 + 1, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)
    noisy = np.asarray(image).astype(np.int16) + rng.integers(-20, 20, (size[1], size[0], 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.mark.parametrize("size", [(500, 400), (333, 517), (1201, 799)])
@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_fast_decode_matches_pillow(size: tuple[int, int], scale: int) -> None:
    data = photo(size, seed=size[0] + scale)
    fast = decode.decode_jpeg_fast(decode.open_image(data), data, scale)
    assert fast is not None
    slow_image = decode.open_image(data)
    factor = decode.draft(slow_image, (size[0], size[1]), (size[0] // scale, size[1] // scale))
    assert factor == 1 / scale
    slow = decode.load_rgb(slow_image)
    assert fast.size == slow.size
    assert fast.mode == "RGBX"
    assert np.array_equal(np.asarray(fast.convert("RGB")), np.asarray(slow))


def test_fast_decode_declines_what_it_does_not_handle(tmp_path: Path) -> None:
    gray = io.BytesIO()
    Image.new("L", (40, 30), 128).save(gray, "JPEG")
    png = io.BytesIO()
    Image.new("RGB", (40, 30)).save(png, "PNG")
    for data in (gray.getvalue(), png.getvalue()):
        assert decode.decode_jpeg_fast(decode.open_image(data), data, 1) is None


def test_rendered_batches_do_not_depend_on_the_decoder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = []
    for i in range(6):
        paths.append(tmp_path / f"{i}.jpg")
        paths[-1].write_bytes(photo((480 + 40 * i, 360), seed=i))
    spec = parse_augment({"random_resized_crop": {"scale": [0.2, 1.0]}, "horizontal_flip": True})

    def render_all() -> np.ndarray:
        out = np.empty((len(paths), 96, 96, 3), np.uint8)
        renderer = Renderer(image_size=(96, 96), spec=spec)
        for row, path in enumerate(paths):
            renderer.render_into(path, sample_rng(1, 0, row), out[row])
        return out

    fast = render_all()
    monkeypatch.setattr(decode, "_simplejpeg", None)
    assert np.array_equal(fast, render_all())

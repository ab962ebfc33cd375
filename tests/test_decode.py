"""Decoding real files to upright RGB: modes, formats, EXIF orientation, reduced-scale JPEG."""

from __future__ import annotations

import pathlib
import warnings
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from tests.images import (
    QUADRANTS,
    assert_quadrants,
    pattern,
    png_chunks,
    region_mean,
    save,
    stored_for_orientation,
    write_animated,
    write_image,
)
from zerofeed.producer import decode
from zerofeed.producer.geometry import to_raw_box


def _decode(path: pathlib.Path, hint: tuple[int, int] | None = None) -> np.ndarray:
    image = decode.decode_rgb(decode.open_image(path), hint)
    assert image.mode == "RGB"
    return np.asarray(image)


def _pixels(path: pathlib.Path) -> list[tuple[int, ...]]:
    return [tuple(int(v) for v in px) for px in _decode(path).reshape(-1, 3)]


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".gif", ".webp", ".tif", ".bmp"])
def test_every_format_decodes_to_the_picture(tmp_path: pathlib.Path, suffix: str) -> None:
    path = write_image(tmp_path / f"picture{suffix}", size=(64, 48))
    pixels = _decode(path)
    assert pixels.shape == (48, 64, 3)
    assert_quadrants(pixels)


@pytest.mark.parametrize(
    ("mode", "stored", "expected"),
    [
        ("L", [[0, 100, 255]], [(0, 0, 0), (100, 100, 100), (255, 255, 255)]),
        ("LA", [[[100, 0], [30, 255]]], [(100, 100, 100), (30, 30, 30)]),
        ("RGBA", [[[10, 20, 30, 0], [40, 50, 60, 255]]], [(10, 20, 30), (40, 50, 60)]),
    ],
)
def test_gray_and_alpha_modes_drop_alpha(
    tmp_path: pathlib.Path, mode: str, stored: list, expected: list
) -> None:
    image = Image.fromarray(np.array(stored, np.uint8))
    assert image.mode == mode
    path = save(image, tmp_path / "image.png")
    assert _pixels(path) == expected


def _palette_image() -> Image.Image:
    image = Image.new("P", (3, 1))
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    for x in range(3):
        image.putpixel((x, 0), x)
    return image


@pytest.mark.parametrize(
    ("suffix", "transparency"),
    [
        (".png", None),
        (".png", 0),
        (".png", b"\x00\x80\xff"),  # per-entry alpha: a direct convert("RGB") warns
        (".gif", None),
        (".gif", 0),
    ],
)
def test_palette_with_and_without_transparency(
    tmp_path: pathlib.Path, suffix: str, transparency: int | bytes | None
) -> None:
    params: dict[str, Any] = {} if transparency is None else {"transparency": transparency}
    path = save(_palette_image(), tmp_path / f"palette{suffix}", **params)
    with Image.open(path) as opened:
        assert opened.mode == "P"
        assert ("transparency" in opened.info) == (transparency is not None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. Pillow's "Palette images with Transparency" warning
        assert _pixels(path) == [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


@pytest.mark.parametrize("suffix", [".tif", ".jpg"])
def test_cmyk(tmp_path: pathlib.Path, suffix: str) -> None:
    image = Image.new("CMYK", (2, 1), (0, 0, 0, 0))
    image.putpixel((1, 0), (255, 0, 0, 0))
    path = save(image, tmp_path / f"cmyk{suffix}")
    white, cyan = _pixels(path)
    assert np.allclose(white, (255, 255, 255), atol=3)
    assert np.allclose(cyan, (0, 255, 255), atol=3)


def test_one_bit(tmp_path: pathlib.Path) -> None:
    image = Image.new("1", (2, 1), 0)
    image.putpixel((1, 0), 1)
    path = save(image, tmp_path / "bits.png")
    with Image.open(path) as opened:
        assert opened.mode == "1"
    assert _pixels(path) == [(0, 0, 0), (255, 255, 255)]


@pytest.mark.parametrize(
    ("suffix", "dtype"), [(".png", np.uint16), (".tif", np.uint16), (".tif", np.int32)]
)
def test_wide_integers_are_scaled_not_clipped(
    tmp_path: pathlib.Path, suffix: str, dtype: type
) -> None:
    path = save(
        Image.fromarray(np.array([[0, 257, 32768, 65535]], dtype)), tmp_path / f"wide{suffix}"
    )
    with Image.open(path) as opened:
        assert opened.mode in ("I", "I;16", "I;16B")
    assert _pixels(path) == [(0, 0, 0), (1, 1, 1), (128, 128, 128), (255, 255, 255)]


def test_float_is_rounded_and_clipped(tmp_path: pathlib.Path) -> None:
    values = np.array([[0.4, 127.6, 300.0, -5.0]], np.float32)
    path = save(Image.fromarray(values), tmp_path / "float.tif")
    assert _pixels(path) == [(0, 0, 0), (128, 128, 128), (255, 255, 255), (0, 0, 0)]


@pytest.mark.parametrize("suffix", [".gif", ".webp"])
def test_animated_gives_first_frame(tmp_path: pathlib.Path, suffix: str) -> None:
    path = write_animated(tmp_path / f"anim{suffix}", [(255, 0, 0), (0, 0, 255), (0, 255, 0)])
    with Image.open(path) as opened:
        assert getattr(opened, "n_frames", 1) == 3
    assert set(_pixels(path)) == {(255, 0, 0)}


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_exif_orientation_gives_upright_picture(
    tmp_path: pathlib.Path, orientation: int, suffix: str
) -> None:
    path = write_image(tmp_path / f"o{suffix}", size=(64, 48), exif_orientation=orientation)
    with Image.open(path) as stored:
        assert stored.size == ((48, 64) if orientation >= 5 else (64, 48))
        reference = np.asarray(ImageOps.exif_transpose(stored).convert("RGB"))
    pixels = _decode(path)
    assert pixels.shape == (48, 64, 3)
    assert_quadrants(pixels)
    assert np.array_equal(pixels, reference)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_orientation_moves_the_red_quadrant(tmp_path: pathlib.Path, orientation: int) -> None:
    # Written by hand rather than through write_image: stored pixels with red where it belongs.
    stored = np.zeros((40, 60, 3), np.uint8)
    corner = {
        3: (slice(20, 40), slice(30, 60)),
        6: (slice(20, 40), slice(0, 30)),
        8: (slice(0, 20), slice(30, 60)),
    }
    stored[corner[orientation]] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = save(Image.fromarray(stored), tmp_path / "hand.png", exif=exif)
    image = decode.open_image(path)
    assert decode.exif_orientation(image) == orientation
    pixels = _decode(path)
    assert region_mean(pixels, "top_left")[0] == 255  # red is now top left
    for region in ("top_right", "bottom_left", "bottom_right"):
        assert region_mean(pixels, region)[0] == 0


@pytest.mark.parametrize("orientation", [1, 6])
def test_oriented_size_reads_the_header_only(tmp_path: pathlib.Path, orientation: int) -> None:
    path = write_image(tmp_path / "o.jpg", size=(64, 48), exif_orientation=orientation)
    image = decode.open_image(path)
    assert decode.oriented_size(image) == (64, 48)
    assert isinstance(image, ImageFile.ImageFile)
    assert image.tile  # still to be decoded: Pillow empties the tile list on load


@pytest.mark.parametrize(
    ("out_size", "decoded_size"),
    [
        ((100, 100), (200, 150)),
        ((300, 300), (400, 300)),
        ((500, 200), (800, 600)),
        ((1000, 1000), (1600, 1200)),
    ],
)
def test_draft_reduces_jpeg_decode_only_as_far_as_allowed(
    tmp_path: pathlib.Path, out_size: tuple[int, int], decoded_size: tuple[int, int]
) -> None:
    path = write_image(tmp_path / "big.jpg", size=(1600, 1200))
    image = decode.open_image(path)
    factor = decode.draft(image, (1600, 1200), out_size)
    loaded = decode.load_rgb(image)
    assert loaded.size == decoded_size
    assert factor == decoded_size[0] / 1600
    assert loaded.width * (1600 // decoded_size[0]) >= out_size[0] or decoded_size[0] == 1600
    assert_quadrants(np.asarray(loaded))


def test_draft_considers_the_crop_region_not_the_whole_image(tmp_path: pathlib.Path) -> None:
    path = write_image(tmp_path / "big.jpg", size=(1600, 1200))
    image = decode.open_image(path)
    # a 400x400 crop resized to 100x100 allows 1/4, not the 1/8 the whole image would allow
    factor = decode.draft(image, (400, 400), (100, 100))
    assert factor == 0.25
    assert decode.load_rgb(image).size == (400, 300)


def test_draft_leaves_other_formats_alone(tmp_path: pathlib.Path) -> None:
    path = write_image(tmp_path / "big.png", size=(800, 600))
    image = decode.open_image(path)
    assert decode.draft(image, (800, 600), (50, 50)) == 1.0
    assert decode.load_rgb(image).size == (800, 600)


def test_decode_rgb_hint_uses_upright_size(tmp_path: pathlib.Path) -> None:
    path = write_image(tmp_path / "tall.jpg", size=(400, 1600), exif_orientation=6)
    # upright 400x1600 must keep >= 100x400: scale 1/4 (not 1/8, which would give 50x200)
    pixels = _decode(path, hint=(100, 400))
    assert pixels.shape == (400, 100, 3)
    assert_quadrants(pixels)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_raw_box_then_orient_equals_orient_then_crop(orientation: int) -> None:
    upright = pattern((60, 40))
    raw = Image.fromarray(stored_for_orientation(upright, orientation))
    box = (7, 5, 37, 25)  # left, top, right, bottom on the upright picture
    raw_box = to_raw_box(box, orientation, raw.size)
    left, top, right, bottom = (int(v) for v in raw_box)
    cropped = decode.orient(raw.crop((left, top, right, bottom)), orientation)
    assert np.array_equal(np.asarray(cropped), upright[5:25, 7:37])


def test_open_image_rejects_decompression_bombs(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_image(tmp_path / "big.png", size=(100, 100))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 9000)  # 10 000 pixels: Pillow alone only warns
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(Image.DecompressionBombError, match="MAX_IMAGE_PIXELS"):
            decode.open_image(path)


def test_quadrant_colours_are_distinct() -> None:
    colours = list(QUADRANTS.values())
    assert len(set(colours)) == 4


@pytest.mark.parametrize("where", ["before the pixels", "after the pixels"])
def test_a_pngs_orientation_is_found_before_or_after_its_pixels(
    tmp_path: pathlib.Path, where: str
) -> None:
    """Pillow reads chunks after the image data only when it decodes it: given the file's bytes,
    the pixels are not decoded for the orientation unless such chunks are there."""
    path = write_image(tmp_path / "o.png", size=(64, 48), exif_orientation=6)
    chunks = png_chunks(path.read_bytes())
    exif = next(chunk for chunk in chunks if chunk[4:8] == b"eXIf")
    if where == "after the pixels":
        chunks.remove(exif)
        chunks.insert(len(chunks) - 1, exif)  # just before IEND
    data = path.read_bytes()[:8] + b"".join(chunks)
    assert decode.exif_orientation(decode.open_image(data), data) == 6
    assert decode.exif_orientation(decode.open_image(data)) == 6
    plain = write_image(tmp_path / "plain.png", size=(64, 48)).read_bytes()
    assert decode.exif_orientation(decode.open_image(plain), plain) == 1

"""Helpers that write real image files for tests (no tests here).

The standard picture has four coloured quadrants (:data:`QUADRANTS`, as seen upright), a gentle
horizontal gradient and a little seeded noise: orientation, crops and flips all change it visibly.
"""

from __future__ import annotations

import io
import itertools
import pathlib
import struct
import zlib
from typing import Any

import numpy as np
from PIL import Image

QUADRANTS = {
    "top_left": (200, 20, 20),
    "top_right": (20, 200, 20),
    "bottom_left": (20, 20, 200),
    "bottom_right": (200, 200, 200),
}
_ORIENTATION_TAG = 0x0112
_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".gif": "GIF",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
}


def pattern(size: tuple[int, int], *, seed: int = 0) -> np.ndarray:
    """The upright test picture as an ``(h, w, 3)`` uint8 array for ``size = (w, h)``."""
    width, height = size
    picture = np.empty((height, width, 3), np.int64)
    top, left = slice(0, height // 2), slice(0, width // 2)
    bottom, right = slice(height // 2, height), slice(width // 2, width)
    picture[top, left] = QUADRANTS["top_left"]
    picture[top, right] = QUADRANTS["top_right"]
    picture[bottom, left] = QUADRANTS["bottom_left"]
    picture[bottom, right] = QUADRANTS["bottom_right"]
    picture += (np.arange(width) * 40 // max(width, 1))[None, :, None]
    picture += np.random.default_rng(seed).integers(0, 15, picture.shape)
    return np.clip(picture, 0, 255).astype(np.uint8)


def stored_for_orientation(upright: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels to store so that a viewer honouring EXIF ``orientation`` shows ``upright``."""
    stored = {
        1: upright,
        2: upright[:, ::-1],
        3: upright[::-1, ::-1],
        4: upright[::-1],
        5: upright.swapaxes(0, 1),
        6: np.rot90(upright, 1),  # display rotates 90 degrees clockwise
        7: upright.swapaxes(0, 1)[::-1, ::-1],
        8: np.rot90(upright, -1),  # display rotates 90 degrees counter-clockwise
    }[orientation]
    return np.ascontiguousarray(stored)


def format_of(path: pathlib.Path) -> str:
    """Pillow's format name for a file suffix."""
    return _FORMATS[path.suffix.lower()]


def save(
    image: Image.Image, path: pathlib.Path, fmt: str | None = None, **params: Any
) -> pathlib.Path:
    """Save ``image`` to ``path`` (format from the suffix unless ``fmt``) and return ``path``."""
    image.save(path, fmt or format_of(path), **params)
    return path


def write_image(
    path: pathlib.Path,
    *,
    mode: str = "RGB",
    size: tuple[int, int] = (64, 48),
    fmt: str | None = None,
    exif_orientation: int | None = None,
    seed: int = 0,
    quality: int = 95,
) -> pathlib.Path:
    """Write the test picture, upright size ``size = (w, h)``, converted to ``mode``.

    With ``exif_orientation`` the pixels are stored turned so that honouring the tag shows the
    upright picture (the stored size is ``(h, w)`` for orientations 5..8).
    """
    upright = pattern(size, seed=seed)
    stored = stored_for_orientation(upright, exif_orientation or 1)
    image = Image.fromarray(stored).convert(mode)
    fmt = fmt or format_of(path)
    params: dict[str, Any] = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[_ORIENTATION_TAG] = exif_orientation
        params["exif"] = exif
    return save(image, path, fmt, **params)


def write_animated(
    path: pathlib.Path, colours: list[tuple[int, int, int]], size: tuple[int, int] = (32, 32)
) -> pathlib.Path:
    """Write an animated GIF or WebP whose frames are solid ``colours``."""
    frames = [Image.new("RGB", size, colour) for colour in colours]
    params: dict[str, Any] = {"lossless": True} if path.suffix == ".webp" else {}
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0, **params)
    return path


def write_truncated_jpeg(path: pathlib.Path, *, size: tuple[int, int] = (64, 48)) -> pathlib.Path:
    """Write a JPEG cut off after half of its bytes (the header survives, the scan does not)."""
    write_image(path, size=size)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_not_an_image(path: pathlib.Path) -> pathlib.Path:
    """Write a text file (whatever its suffix says)."""
    path.write_text("this is not an image, just some text\n")
    return path


def region_mean(pixels: np.ndarray, region: str) -> np.ndarray:
    """Mean colour of the inner part of a quadrant of an ``(h, w, 3)`` array (``"top_left"``...)."""
    height, width = pixels.shape[:2]
    rows = (
        slice(height // 8, 3 * height // 8)
        if region.startswith("top")
        else slice(5 * height // 8, 7 * height // 8)
    )
    cols = (
        slice(width // 8, 3 * width // 8)
        if region.endswith("left")
        else slice(5 * width // 8, 7 * width // 8)
    )
    return pixels[rows, cols].reshape(-1, 3).mean(axis=0)


def assert_quadrants(pixels: np.ndarray, *, tolerance: float = 40) -> None:
    """Fail unless every quadrant of ``pixels`` has roughly the colour of :data:`QUADRANTS`."""
    for region, colour in QUADRANTS.items():
        mean = region_mean(pixels, region)
        # the gradient adds 0..40 across the width, the noise 7 on average
        expected = np.array(colour) + (10 if region.endswith("left") else 30) + 7
        if np.abs(mean - expected).max() > tolerance:
            raise AssertionError(f"{region} has mean colour {mean.round()}, expected ~{expected}")


PNG_COLOUR_TYPES = {"L": 0, "RGB": 2, "LA": 4, "RGBA": 6}


def png_bytes(
    pixels: np.ndarray,
    mode: str,
    *,
    filters: tuple[int, ...] = (0, 1, 2, 3, 4),
    idat_chunks: int = 3,
    interlaced: bool = False,
) -> bytes:
    """An 8-bit PNG written by hand, so that every row filter is exercised (Pillow's encoder
    picks its own): row ``y`` uses ``filters[y % len(filters)]``, and the image data is split
    into ``idat_chunks`` chunks. ``pixels`` is ``(h, w)`` or ``(h, w, channels)`` for ``mode``.
    ``interlaced`` only sets the header's flag (the data stays sequential)."""
    height, width = pixels.shape[:2]
    raw = pixels.reshape(height, -1).astype(np.int64)
    bpp = raw.shape[1] // width
    rows = []
    for y in range(height):
        row, prior = raw[y], raw[y - 1] if y else np.zeros_like(raw[0])
        left = np.concatenate([np.zeros(bpp, np.int64), row[:-bpp]])
        upper_left = np.concatenate([np.zeros(bpp, np.int64), prior[:-bpp]])
        kind = filters[y % len(filters)]
        if kind == 0:
            predicted = np.zeros_like(row)
        elif kind == 1:
            predicted = left
        elif kind == 2:
            predicted = prior
        elif kind == 3:
            predicted = (left + prior) // 2
        else:  # Paeth
            estimate = left + prior - upper_left
            distances = [np.abs(estimate - v) for v in (left, prior, upper_left)]
            predicted = np.where(
                (distances[0] <= distances[1]) & (distances[0] <= distances[2]),
                left,
                np.where(distances[1] <= distances[2], prior, upper_left),
            )
        rows.append(bytes([kind]) + ((row - predicted) % 256).astype(np.uint8).tobytes())
    stream = zlib.compress(b"".join(rows), 6)
    cuts = [len(stream) * i // idat_chunks for i in range(idat_chunks + 1)]
    header = struct.pack(
        ">IIBBBBB", width, height, 8, PNG_COLOUR_TYPES[mode], 0, 0, int(interlaced)
    )
    chunks = [png_chunk(b"IHDR", header)]
    chunks += [png_chunk(b"IDAT", stream[a:b]) for a, b in itertools.pairwise(cuts)]
    chunks.append(png_chunk(b"IEND", b""))
    return PNG_SIGNATURE + b"".join(chunks)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, type, body and the CRC of type and body."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_chunks(data: bytes) -> list[bytes]:
    """A PNG's chunks after the signature, each whole (length, type, body, CRC)."""
    chunks, position = [], len(PNG_SIGNATURE)
    while position < len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        chunks.append(data[position : position + 12 + length])
        position += 12 + length
    return chunks


def png_image_data(data: bytes) -> bytes:
    """A PNG's zlib stream: its image data (IDAT) chunks' bodies, joined."""
    return b"".join(chunk[8:-4] for chunk in png_chunks(data) if chunk[4:8] == b"IDAT")


SUBSAMPLINGS = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}
# What the windowed decoders take: colour JPEGs of each subsampling, greyscale and CMYK ones.
KINDS = {
    **{name: (value, "RGB") for name, value in SUBSAMPLINGS.items()},
    "grey": (2, "L"),
    "cmyk": (2, "CMYK"),
}


def photo(
    size: tuple[int, int],
    seed: int,
    *,
    subsampling: int = 2,
    progressive: bool = False,
    mode: str = "RGB",
    quality: int = 90,
    noise: int = 20,
    **options: Any,
) -> bytes:
    """A noisy, smooth picture as a JPEG (libjpeg's work looks like a real photo's); ``mode``
    ``"L"`` saves it greyscale (one component), ``"CMYK"`` as Adobe CMYK (four); ``options`` go
    to Pillow's JPEG writer (``optimize``, ``restart_marker_blocks``, ...)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (size[1] // 8 + 1, size[0] // 8 + 1, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)
    grain = rng.integers(-noise, noise, (size[1], size[0], 3))
    noisy = np.asarray(image).astype(np.int16) + grain
    buffer = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).convert(mode).save(
        buffer,
        "JPEG",
        quality=quality,
        subsampling=subsampling,
        progressive=progressive,
        **options,
    )
    return buffer.getvalue()


def random_window(size: tuple[int, int], rng: np.random.Generator) -> tuple[int, int, int, int]:
    x0, x1 = sorted(int(v) for v in rng.integers(0, size[0], 2))
    y0, y1 = sorted(int(v) for v in rng.integers(0, size[1], 2))
    return (x0, y0, x1 + 1, y1 + 1)

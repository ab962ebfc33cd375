"""Open image files and decode them to upright RGB images, cheaply.

The pieces are small so that :mod:`zerofeed.producer.render` can crop and resize *before* paying for
a full decode:

1. :func:`open_image` reads the header only (lazy), and rejects decompression bombs;
2. :func:`exif_orientation` / :func:`oriented_size` give the upright size without decoding;
3. :func:`draft` asks libjpeg for a reduced-scale decode (1/2, 1/4, 1/8) that is still large enough;
4. :func:`load_rgb` decodes the first frame and converts any mode to 8-bit RGB;
5. :func:`orient` turns a decoded image upright (:mod:`~zerofeed.producer.geometry` maps boxes);
6. :func:`decode_jpeg_window` decodes only a window of a colour, greyscale or CMYK JPEG, at
   reduced scale, as RGBX;
   :func:`decode_jpeg_window_resized` also resizes it into a caller's buffer, in one pass;
   :func:`decode_png_resized` does the same for an 8-bit greyscale or RGB(A) PNG.

:func:`decode_rgb` chains them for callers that want the whole upright image.

Colour conversion (:func:`to_rgb`) follows ``keras.utils.load_img``, which calls ``convert("RGB")``:
**alpha is dropped, not composited** (a transparent pixel keeps the colour stored under it). Two
cases differ from a plain ``convert``: 16- and 32-bit integer images (``I;16*``, ``I``) are scaled
to 8 bits by ``value >> 8`` (65535 -> 255, 32768 -> 128) instead of being clipped at 255, and float
images (``F``) are read as 0..255, rounded and clipped. Animated GIF and WebP files give their
first frame.
"""

from __future__ import annotations

import io
import pathlib
import struct

import numpy as np
from PIL import Image

from zerofeed.producer import resize

# Optional fast paths (accelerators.py): the same pixels as Pillow's decoder, faster.
from zerofeed.producer.accelerators import jpegwindow as _jpegwindow
from zerofeed.producer.accelerators import pngdecode as _pngdecode
from zerofeed.producer.accelerators import simplejpeg as _simplejpeg
from zerofeed.producer.geometry import Box, Window, draft_scale, scaled_size

__all__ = [
    "decode_jpeg_window",
    "decode_jpeg_window_resized",
    "decode_png_resized",
    "decode_rgb",
    "draft",
    "exif_orientation",
    "load_rgb",
    "open_image",
    "orient",
    "oriented_size",
    "to_rgb",
]

_ORIENTATION_TAG = 0x0112
# EXIF orientation -> the transpose that makes the stored image upright (index 0 and 1: none).
_TRANSPOSES: tuple[Image.Transpose | None, ...] = (
    None,
    None,
    Image.Transpose.FLIP_LEFT_RIGHT,
    Image.Transpose.ROTATE_180,
    Image.Transpose.FLIP_TOP_BOTTOM,
    Image.Transpose.TRANSPOSE,
    Image.Transpose.ROTATE_270,
    Image.Transpose.TRANSVERSE,
    Image.Transpose.ROTATE_90,
)
_WIDE_INT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")
_WINDOWABLE_MODES = ("RGB", "L", "CMYK")  # JPEG modes the windowed decoders take


def open_image(source: pathlib.Path | bytes) -> Image.Image:
    """Open an image lazily: parse its header, decode nothing.

    A path is read into memory first, so no file handle stays open (animated images keep theirs).

    Raises:
        OSError: the file cannot be read, or ``PIL.UnidentifiedImageError`` (an ``OSError``) when
            it is not an image Pillow knows.
        PIL.Image.DecompressionBombError: the image has more than ``PIL.Image.MAX_IMAGE_PIXELS``
            pixels. Pillow itself only warns between 1x and 2x that limit; here it is an error.
    """
    data = source.read_bytes() if isinstance(source, pathlib.Path) else source
    image = Image.open(io.BytesIO(data))
    _check_pixels(image.size)
    return image


def plain_jpeg_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of a colour, greyscale or CMYK JPEG that needs nothing from Pillow,
    without Pillow.

    That is: zerofeed's C accelerator is built, and the file is a JPEG of 3 components, 1
    greyscale one or 4 CMYK/YCCK ones, with no APP1 (EXIF or XMP, so orientation 1) and no APP2
    (so not a multi-picture file) marker, which Pillow would open as an upright ``RGB``, ``L`` or
    ``CMYK`` ``JPEG``. None otherwise (then :func:`open_image`).

    Raises:
        PIL.Image.DecompressionBombError: as :func:`open_image`.
    """
    if _jpegwindow is None:
        return None
    size = _jpegwindow.plain_jpeg_size(data)
    if size is not None:
        _check_pixels(size)
    return size


def _check_pixels(size: tuple[int, int]) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    width, height = size
    pixels = width * height
    if limit is not None and pixels > limit:
        raise Image.DecompressionBombError(
            f"image is {width}x{height} = {pixels} pixels, more than "
            f"PIL.Image.MAX_IMAGE_PIXELS = {limit}; raise that limit in the producer if such "
            "images are expected"
        )


def exif_orientation(image: Image.Image, data: bytes | None = None) -> int:
    """The EXIF orientation (1..8) of an opened image; 1 when absent or invalid.

    Pillow decodes a whole PNG to look for metadata (EXIF, XMP, text) after its image data.
    Given the file's bytes, ``data``, a PNG with nothing but ``IEND`` after its image data is
    not decoded for that: what Pillow read when opening it is all there is.
    """
    if image.format == "PNG" and data is not None and not _png_metadata_after_pixels(data):
        exif = Image.Image.getexif(image)  # Pillow's own reading, without the decode
    else:
        exif = image.getexif()
    value = exif.get(_ORIENTATION_TAG, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _png_metadata_after_pixels(data: bytes) -> bool:
    """Whether a PNG has chunks other than ``IEND`` after its image data (or cannot be walked:
    then Pillow is asked)."""
    position, in_pixels = 8, False
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        if kind == b"IDAT":
            in_pixels = True
        elif in_pixels:
            return kind != b"IEND"
        position += 12 + length
    return True


def oriented_size(image: Image.Image) -> tuple[int, int]:
    """``(width, height)`` of the image once turned upright by its EXIF orientation."""
    width, height = image.size
    return (height, width) if exif_orientation(image) >= 5 else (width, height)


def orient(image: Image.Image, orientation: int) -> Image.Image:
    """Turn a decoded image upright for the given EXIF orientation (returns it as is for 1)."""
    method = _TRANSPOSES[orientation]
    return image if method is None else image.transpose(method)


def draft(image: Image.Image, region: tuple[float, float], out_size: tuple[int, int]) -> float:
    """Ask Pillow for a reduced-scale JPEG decode by :func:`draft_scale`; call before loading.

    Other formats are left alone.

    Returns:
        The factor from original to decoded coordinates: ``1 / scale`` (``1.0`` when nothing
        changed). The decoded size is the original divided by ``scale``, rounded up.
    """
    if image.format != "JPEG":
        return 1.0
    return _draft_at(image, draft_scale(region, out_size))


def _draft_at(image: Image.Image, scale: int) -> float:
    """Ask Pillow to decode a JPEG at ``1 / scale``; the factor :func:`draft` returns."""
    if scale == 1:
        return 1.0
    width, height = image.size
    drafted = image.draft(image.mode, (width // scale, height // scale))
    if drafted is None:
        return 1.0
    # Pillow maps the original onto (0, 0, width / scale, height / scale) of the drafted image;
    # 1 / scale is a power of two, so scaled box edges stay exact and within the decoded size.
    return 1.0 / round(width / drafted[1][2])


def decode_jpeg_window(
    image: Image.Image | None, data: bytes, scale: int, window: Window
) -> np.ndarray | None:
    """Decode the ``(left, top, right, bottom)`` window of a JPEG decoded at ``1 / scale``.

    ``window`` is in pixels of the scaled image (:func:`scaled_size`). ``image`` is the file
    opened by :func:`open_image`, or None for one that :func:`plain_jpeg_size` accepted. Returns
    a C-contiguous ``(height, width, 4)`` uint8 RGBX array, or None when this is not a colour
    (YCbCr or RGB), greyscale or CMYK JPEG (:func:`to_rgb`'s pixels either way): the caller then
    decodes with Pillow.

    The fastest decoder available does it, and all three give the same pixels (tests check it):
    zerofeed's C accelerator decodes only the window (rows after it are never read, columns
    outside it are not transformed); simplejpeg decodes the whole scaled image; Pillow's
    :func:`draft` does the same, more slowly.

    Raises:
        OSError: corrupt or truncated data. The C accelerator never reads past the window, so it
            does not notice damage there that the others report.
    """
    if not _is_windowable_jpeg(image):
        return None
    left, top, right, bottom = window
    if _jpegwindow is not None:
        pixels = np.empty((bottom - top, right - left, 4), np.uint8)
        try:
            _jpegwindow.decode_window(
                data, 8 // scale, left, top, right - left, bottom - top, pixels
            )
        except ValueError as exc:  # libjpeg's message for any corrupt data
            raise OSError(f"truncated or corrupt JPEG data: {exc}") from None
        return pixels
    if image is None:
        raise ValueError("decode_jpeg_window needs the opened image without the C accelerator")
    full = _decode_scaled_rgbx(image, data, scale)
    return np.ascontiguousarray(full[top:bottom, left:right])


def decode_jpeg_window_resized(
    image: Image.Image | None,
    data: bytes,
    scale: int,
    window: Window,
    box: Box,
    out: np.ndarray,
    *,
    hflip: bool = False,
    vflip: bool = False,
) -> bool:
    """:func:`decode_jpeg_window`, then :func:`~zerofeed.producer.resize.resize_into` of its ``box``.

    The same pixels either way; with zerofeed's C accelerator it is one pass: each row of the
    window goes through the horizontal resize as soon as it is decoded, so the window is never
    stored, and rows the resize does not read are not decoded. Returns False, having written
    nothing, when this is not a colour, greyscale or CMYK JPEG (as :func:`decode_jpeg_window`
    returns None).

    Raises:
        OSError: corrupt or truncated data, as :func:`decode_jpeg_window`.
    """
    if not _is_windowable_jpeg(image):
        return False
    if _jpegwindow is None:
        pixels = decode_jpeg_window(image, data, scale, window)
        if pixels is None:  # pragma: no cover - checked above
            return False
        resize.resize_into(pixels, box, out, hflip=hflip, vflip=vflip)
        return True
    left, top, right, bottom = window
    out_height, out_width = out.shape[:2]
    try:
        _jpegwindow.decode_resized(
            data,
            8 // scale,
            left,
            top,
            right - left,
            bottom - top,
            box,
            out,
            out_width,
            out_height,
            hflip,
            vflip,
        )
    except ValueError as exc:  # libjpeg's message for any corrupt data
        raise OSError(f"truncated or corrupt JPEG data: {exc}") from None
    return True


def decode_png_resized(
    image: Image.Image | None,
    data: bytes,
    box: Box,
    out: np.ndarray,
    *,
    hflip: bool = False,
    vflip: bool = False,
) -> bool:
    """Decode a PNG and resize its ``box`` into ``out`` as :func:`~zerofeed.producer.resize.
    resize_into` would (Pillow's ``convert("RGB")``, then its bilinear ``resize``), in one pass.

    zerofeed's C accelerator inflates the image data with libdeflate and hands each row to the
    resize as soon as it is unfiltered; rows below the box are not unfiltered. It takes 8-bit
    greyscale, grey+alpha, RGB and RGBA PNGs that are not interlaced or animated. Returns False,
    having written nothing, for any other image, without the accelerator, or when the file's
    image data does not decode cleanly: the caller then decodes with Pillow, which gives the
    same pixels or the error of a damaged file.
    """
    if _pngdecode is None or image is None or image.format != "PNG":
        return False  # which PNGs it takes, the C module alone decides (from the file's header)
    out_height, out_width = out.shape[:2]
    return _pngdecode.decode_resized(data, box, out, out_width, out_height, hflip, vflip)


def _is_windowable_jpeg(image: Image.Image | None) -> bool:
    """Whether the windowed decoders can take it: None stands for a :func:`plain_jpeg_size` one.
    Each comes out as the RGBX of Pillow's ``convert("RGB")``: a greyscale JPEG with the grey in
    each channel, a CMYK one by Pillow's CMYK-to-RGB arithmetic."""
    return image is None or (image.format == "JPEG" and image.mode in _WINDOWABLE_MODES)


def _decode_scaled_rgbx(image: Image.Image, data: bytes, scale: int) -> np.ndarray:
    size = scaled_size(image.size, scale)
    if _simplejpeg is not None and image.mode != "CMYK":  # TurboJPEG has no CMYK to RGB
        try:
            pixels: np.ndarray = _simplejpeg.decode_jpeg(
                data, colorspace="RGBX", min_factor=scale, min_width=size[0], min_height=size[1]
            )
        except ValueError as exc:  # simplejpeg's word for every libjpeg error
            raise OSError(f"truncated or corrupt JPEG data: {exc}") from None
        if pixels.shape[:2] == (size[1], size[0]):
            return pixels
    _draft_at(image, scale)
    loaded = load_rgb(image)
    if loaded.size != size:  # pragma: no cover - libjpeg always honours these scales
        raise OSError(f"Pillow decoded {loaded.size} at 1/{scale}, expected {size}")
    return np.asarray(loaded.convert("RGBX"))


def load_rgb(image: Image.Image) -> Image.Image:
    """Decode the first frame of an opened image and convert it to 8-bit RGB (:func:`to_rgb`)."""
    image.load()
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to ``RGB``, dropping alpha like ``keras.utils.load_img`` does.

    ``P`` with a transparency entry goes through ``RGBA``; ``I``/``I;16*`` are scaled by ``>> 8``;
    ``F`` is rounded and clipped to 0..255; every other mode uses Pillow's ``convert("RGB")``.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _WIDE_INT_MODES:
        wide = np.clip(np.asarray(image).astype(np.int64), 0, 65535) >> 8
        return _gray_to_rgb(wide.astype(np.uint8))
    if mode == "F":
        values = np.nan_to_num(np.asarray(image), nan=0.0, posinf=255.0, neginf=0.0)
        return _gray_to_rgb(np.rint(np.clip(values, 0.0, 255.0)).astype(np.uint8))
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def _gray_to_rgb(gray: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(gray)).convert("RGB")


def decode_rgb(image: Image.Image, min_size_hint: tuple[int, int] | None = None) -> Image.Image:
    """Decode an opened image to an upright RGB image.

    Args:
        image: from :func:`open_image`, not yet loaded.
        min_size_hint: ``(width, height)`` the upright result must keep at least; when given, a
            JPEG may be decoded at reduced scale (the result is then smaller than the file's size).
    """
    orientation = exif_orientation(image)
    if min_size_hint is not None:
        hint = min_size_hint[::-1] if orientation >= 5 else min_size_hint
        draft(image, (image.width, image.height), (hint[0], hint[1]))
    return orient(load_rgb(image), orientation)

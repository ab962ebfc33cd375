"""Pillow's antialiased bilinear resize of an RGBX window, written into a batch slot.

:func:`resize_into` resizes in two passes with Pillow's bilinear arithmetic: a horizontal pass
(``Image.resize`` that changes only the width), then a vertical one, then optional mirroring into
``out``. (A single ``Image.resize`` call may run the passes the other way round, which rounds
differently in the last bit; fixing the order keeps every producer's pixels the same.)
zerofeed's C accelerator (``_resample``, built by ``setup.py`` when a compiler is there) computes
exactly these pixels, several times faster (AVX2 where the CPU has it) and with no intermediate
images; without it, Pillow does the two passes. Either way the bytes are the same, so producers
with and without the accelerator make identical batches. (For a JPEG window the producer uses
:func:`~zerofeed.producer.decode.decode_jpeg_window_resized` instead, which runs the same
arithmetic on each row as it is decoded.)
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from zerofeed.producer.accelerators import resample as _resample
from zerofeed.producer.geometry import Box

__all__ = ["resize_into", "write_image"]


def resize_into(
    pixels: np.ndarray, box: Box, out: np.ndarray, *, hflip: bool = False, vflip: bool = False
) -> None:
    """Resize the ``box`` of ``pixels`` to fill ``out``, mirrored as asked.

    Args:
        pixels: C-contiguous ``(height, width, 4)`` uint8 RGBX.
        box: ``(left, top, right, bottom)`` in pixels of ``pixels``, as Pillow's ``box``.
        out: C-contiguous ``(H, W, 3)`` uint8, overwritten.
        hflip: mirror left-right; ``vflip``: mirror top-bottom.
    """
    height, width = pixels.shape[:2]
    out_height, out_width = out.shape[:2]
    if _resample is not None:
        _resample.resize_into(pixels, width, height, box, out, out_width, out_height, hflip, vflip)
        return
    left, top, right, bottom = box
    image = Image.frombuffer("RGBX", (width, height), pixels, "raw", "RGBX", 0, 1)
    bilinear = Image.Resampling.BILINEAR
    across = image.resize((out_width, height), bilinear, box=(left, 0, right, height))
    resized = across.resize(
        (out_width, out_height), bilinear, box=(0, top, out_width, bottom)
    ).convert("RGB")
    write_image(out, resized, hflip=hflip, vflip=vflip)


def write_image(out: np.ndarray, image: Image.Image, *, hflip: bool, vflip: bool) -> None:
    """Copy an RGB image of ``out``'s size into ``out``, mirrored as asked."""
    if hflip:  # Pillow's transpose is far cheaper than a negative-stride numpy copy
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if vflip:
        image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    np.copyto(out, np.frombuffer(image.tobytes(), np.uint8).reshape(out.shape))

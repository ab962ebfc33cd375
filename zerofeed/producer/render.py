"""The per-sample pipeline: an image file in, an ``(H, W, 3)`` uint8 array out, into a buffer.

Steps, in the fixed order of :mod:`zerofeed.common.transforms`; random numbers are drawn from the
sample's ``numpy.random.Generator`` in this order and only for enabled transforms, so the same spec
and generator state give byte-identical pixels on any machine:

1. geometry: a random resized crop box (torchvision's algorithm, on the upright image) or the whole
   image. A colour, greyscale or CMYK JPEG is decoded only in a window around the box, at the
   smallest libjpeg scale that keeps the box at least the output size, and the window is resized
   with Pillow's antialiased bilinear arithmetic (:mod:`zerofeed.producer.resize`); an 8-bit
   greyscale or RGB(A) PNG is inflated by libdeflate and resized row by row with the same
   arithmetic; other images are decoded by Pillow and resized the same way (two passes,
   horizontal first, whatever order a single Pillow ``resize`` would pick). The resize happens
   on the stored (not yet upright) pixels; only the small result is transposed;
2. rotation about the centre, bilinear, same size, black fill;
3. brightness, 4. contrast, 5. saturation (``PIL.ImageEnhance``), factor in ``[1 - x, 1 + x]``;
6. custom transforms from plugins, in the spec's order;
7. horizontal then vertical flip, applied while copying into the output buffer.

With no transform between geometry and the flips (the common case), the flips are drawn right
after the crop box (the same order of draws) and the resize writes the flipped sample straight
into the output buffer.

Without a crop the whole image is resized to ``image_size`` without keeping its aspect ratio, as
``keras.utils.image_dataset_from_directory`` does. Alpha is dropped (see
:mod:`zerofeed.producer.decode`). Every per-file failure becomes a
:class:`~zerofeed.common.errors.BadSampleError` whose ``kind`` is one of :data:`BAD_SAMPLE_KINDS`.
"""

from __future__ import annotations

import pathlib
import struct
import time
from collections.abc import Mapping
from typing import Any, overload

import numpy as np
from PIL import Image, ImageEnhance, UnidentifiedImageError

from zerofeed.common.errors import BadSampleError, ConfigError
from zerofeed.common.transforms import TransformSpec
from zerofeed.producer import decode, resize
from zerofeed.producer.geometry import (
    draft_scale,
    random_resized_crop,
    read_window,
    to_raw_box,
)
from zerofeed.producer.plugins import CustomTransform
from zerofeed.producer.reader import read_file

__all__ = ["BAD_SAMPLE_KINDS", "Renderer"]

BAD_SAMPLE_KINDS = ("missing", "permission", "unreadable", "decode", "too_large", "transform")

# What Pillow's decoders raise on malformed input (beyond the documented OSError family), and
# its corrupt-data warnings where warnings are turned into errors.
_DECODE_ERRORS = (
    UserWarning,
    OSError,
    SyntaxError,
    EOFError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    ZeroDivisionError,
    struct.error,
)
_TOO_LARGE_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning)
_ENHANCERS = (
    ("brightness", ImageEnhance.Brightness),
    ("contrast", ImageEnhance.Contrast),
    ("saturation", ImageEnhance.Color),
)

Bound = tuple[str, CustomTransform, Mapping[str, Any]]
# EXIF orientations that are mirror images of the stored pixels: (left-right, top-bottom).
_MIRRORS = {1: (False, False), 2: (True, False), 3: (True, True), 4: (False, True)}


class Renderer:
    """Turns one image file into an ``(H, W, 3)`` uint8 array written into a caller's buffer.

    Args:
        image_size: output ``(height, width)``, as in Keras.
        spec: the augmentation to apply.
        transforms: custom transforms by name, from :func:`~zerofeed.producer.plugins.load_plugins`.

    Raises:
        ConfigError: ``image_size`` is not two positive ints, or ``spec`` names a custom transform
            that ``transforms`` lacks.

    A renderer holds no state between samples: one can serve several threads, as long as each
    sample has its own generator and output buffer.
    """

    def __init__(
        self,
        *,
        image_size: tuple[int, int],
        spec: TransformSpec,
        transforms: Mapping[str, CustomTransform] | None = None,
        stage_seconds: dict[str, float] | None = None,
    ) -> None:
        """``stage_seconds``, if given, accumulates the time spent in ``read``, ``decode`` (with
        the crop and resize) and ``augment`` (everything after), for the producer's reports."""
        self._height, self._width = _check_image_size(image_size)
        self._spec = spec
        self._custom = _bind_custom(spec, transforms or {})
        self._stages = stage_seconds if stage_seconds is not None else {}
        self._geometry_only = not (
            spec.rotate or spec.brightness or spec.contrast or spec.saturation or self._custom
        )

    @property
    def image_size(self) -> tuple[int, int]:
        """Output ``(height, width)``."""
        return (self._height, self._width)

    @property
    def spec(self) -> TransformSpec:
        """The augmentation this renderer applies."""
        return self._spec

    def render_into(self, path: pathlib.Path, rng: np.random.Generator, out: np.ndarray) -> None:
        """Read, decode, augment and write one local image file into ``out``.

        Args:
            path: the image file.
            rng: this sample's generator; it is advanced by the random draws of the pipeline.
            out: a uint8 array of shape ``(H, W, 3)`` (a view into a batch buffer), overwritten.

        Raises:
            BadSampleError: the file is missing, not permitted, unreadable, not a decodable image,
                too large, or a custom transform failed; ``kind`` says which.
            ConfigError: ``out`` has the wrong shape or dtype (a caller bug, not a bad sample).
        """
        self._check_out(out)
        started = time.perf_counter()
        data = read_file(pathlib.Path(path))
        self._count("read", time.perf_counter() - started)
        self.render_bytes(str(path), data, rng, out)

    def render_bytes(
        self, name: str, data: bytes, rng: np.random.Generator, out: np.ndarray
    ) -> None:
        """Decode, augment and write one encoded image, ``data``, into ``out``; ``name`` (the
        sample's manifest path) is what errors name. Raises as :meth:`render_into`."""
        self._check_out(out)
        started = time.perf_counter()
        if self._geometry_only:  # crop, resize and flips in one pass, straight into `out`
            try:
                self._geometry(name, data, rng, out)
            finally:
                self._count("decode", time.perf_counter() - started)
            return
        image = self._geometry(name, data, rng, None)
        decoded = time.perf_counter()
        self._count("decode", decoded - started)
        try:
            self._augment_into(name, image, rng, out)
        finally:
            self._count("augment", time.perf_counter() - decoded)

    def _count(self, stage: str, seconds: float) -> None:
        self._stages[stage] = self._stages.get(stage, 0.0) + seconds

    def _augment_into(
        self, path: str, image: Image.Image, rng: np.random.Generator, out: np.ndarray
    ) -> None:
        image = self._photometric(image, rng)
        result = self._apply_custom(path, image, rng)
        hflip, vflip = self._draw_flips(rng)
        if isinstance(result, np.ndarray):
            np.copyto(out, result[:: -1 if vflip else 1, :: -1 if hflip else 1])
            return
        resize.write_image(out, result, hflip=hflip, vflip=vflip)

    def _draw_flips(self, rng: np.random.Generator) -> tuple[bool, bool]:
        hflip = self._spec.horizontal_flip and rng.random() < 0.5
        vflip = self._spec.vertical_flip and rng.random() < 0.5
        return hflip, vflip

    def _check_out(self, out: np.ndarray) -> None:
        expected = (self._height, self._width, 3)
        if not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.shape != expected:
            got = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
            raise ConfigError(
                f"render_into needs a uint8 array of shape {expected} to write into, got {got}."
            )

    @overload
    def _geometry(
        self, path: str, data: bytes, rng: np.random.Generator, out: None
    ) -> Image.Image: ...

    @overload
    def _geometry(
        self, path: str, data: bytes, rng: np.random.Generator, out: np.ndarray
    ) -> None: ...

    def _geometry(
        self, path: str, data: bytes, rng: np.random.Generator, out: np.ndarray | None
    ) -> Image.Image | None:
        try:
            return self._crop_resize(data, rng, out)
        except _TOO_LARGE_ERRORS as exc:
            raise BadSampleError(str(path), "too_large", str(exc)) from exc
        except _DECODE_ERRORS as exc:
            raise BadSampleError(str(path), "decode", _decode_reason(exc, data)) from exc

    def _crop_resize(
        self, data: bytes, rng: np.random.Generator, out: np.ndarray | None
    ) -> Image.Image | None:
        """Crop and resize; with ``out``, also draw the flips and write the sample there."""
        size = decode.plain_jpeg_size(data)
        if size is not None:  # a plain JPEG: no need to open it in Pillow
            return self._crop_resize_image(data, None, size, 1, rng, out)
        with decode.open_image(data) as image:
            orientation = decode.exif_orientation(image, data)
            return self._crop_resize_image(data, image, image.size, orientation, rng, out)

    def _crop_resize_image(
        self,
        data: bytes,
        image: Image.Image | None,
        stored_size: tuple[int, int],
        orientation: int,
        rng: np.random.Generator,
        out: np.ndarray | None,
    ) -> Image.Image | None:
        upright_size = stored_size[::-1] if orientation >= 5 else stored_size
        left, top, width, height = self._crop_box((upright_size[0], upright_size[1]), rng)
        hflip, vflip = self._draw_flips(rng) if out is not None else (False, False)
        upright_box = (left, top, left + width, top + height)
        box = to_raw_box(upright_box, orientation, stored_size)
        size = (self._height, self._width) if orientation >= 5 else (self._width, self._height)
        scale = draft_scale((width, height), (self._width, self._height))
        window, window_box = read_window(box, scale, stored_size, size)
        if out is not None and orientation in _MIRRORS:  # nothing to transpose: straight to `out`
            target, (mirror_h, mirror_v) = out, _MIRRORS[orientation]
            flips = (hflip != mirror_h, vflip != mirror_v)
        else:  # stored orientation first; turned upright and flipped below
            target, flips = np.empty((size[1], size[0], 3), np.uint8), (False, False)
        hflip_target, vflip_target = flips
        fast = decode.decode_jpeg_window_resized(
            image, data, scale, window, window_box, target, hflip=hflip_target, vflip=vflip_target
        ) or decode.decode_png_resized(
            image, data, box, target, hflip=hflip_target, vflip=vflip_target
        )
        if not fast:  # not a JPEG or PNG the accelerators take (WebP, ...): Pillow decodes
            if image is None:  # pragma: no cover - plain_jpeg_size accepts only what it decodes
                raise ValueError("a plain JPEG the accelerator could not decode")
            pixels, factor = _pillow_decode_rgbx(image, (width, height), size)
            scaled_box = (box[0] * factor, box[1] * factor, box[2] * factor, box[3] * factor)
            resize.resize_into(pixels, scaled_box, target, hflip=hflip_target, vflip=vflip_target)
        if target is out:
            return None
        upright = decode.orient(Image.fromarray(target), orientation)
        if out is None:
            return upright
        resize.write_image(out, upright, hflip=hflip, vflip=vflip)
        return None

    def _crop_box(
        self, size: tuple[int, int], rng: np.random.Generator
    ) -> tuple[int, int, int, int]:
        crop = self._spec.random_resized_crop
        if crop is None:
            return (0, 0, size[0], size[1])
        return random_resized_crop(size, crop, rng)

    def _photometric(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        if self._spec.rotate > 0:
            angle = rng.uniform(-self._spec.rotate, self._spec.rotate)
            image = image.rotate(angle, Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
        for name, enhancer in _ENHANCERS:
            amount: float = getattr(self._spec, name)
            if amount > 0:
                factor = rng.uniform(max(0.0, 1.0 - amount), 1.0 + amount)
                image = enhancer(image).enhance(factor)
        return image

    def _apply_custom(
        self, path: str, image: Image.Image, rng: np.random.Generator
    ) -> Image.Image | np.ndarray:
        current: Image.Image | np.ndarray = image
        for name, fn, params in self._custom:
            if isinstance(current, np.ndarray):
                current = Image.fromarray(current)
            current = self._call_custom(path, name, fn, params, current, rng)
        return current

    def _call_custom(
        self,
        path: str,
        name: str,
        fn: CustomTransform,
        params: Mapping[str, Any],
        image: Image.Image,
        rng: np.random.Generator,
    ) -> Image.Image | np.ndarray:
        try:
            result = fn(image, rng, **params)
        except Exception as exc:
            raise BadSampleError(
                str(path),
                "transform",
                f"custom transform {name!r} raised {type(exc).__name__}: {exc}",
            ) from exc
        problem = _result_problem(result, (self._height, self._width))
        if problem:
            raise BadSampleError(
                str(path),
                "transform",
                f"custom transform {name!r} returned {problem}; expected a PIL RGB image of size "
                f"{(self._width, self._height)} or a uint8 array of shape "
                f"{(self._height, self._width, 3)}",
            )
        return result


def _pillow_decode_rgbx(
    image: Image.Image, region: tuple[int, int], size: tuple[int, int]
) -> tuple[np.ndarray, float]:
    """Any image Pillow reads, as RGBX, at reduced scale where libjpeg allows (``draft``), with
    the factor from the file's pixels to the decoded ones. The resize that follows is the one
    every path uses (:func:`~zerofeed.producer.resize.resize_into`: two passes, horizontal
    first), so the pixels do not depend on the order a single Pillow ``resize`` picks."""
    factor = decode.draft(image, region, size)
    return np.asarray(decode.load_rgb(image).convert("RGBX")), factor


def _decode_reason(exc: BaseException, data: bytes) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return (
            f"not an image Pillow can identify ({len(data)} bytes, starting {data[:16]!r}); "
            "formats read include JPEG, PNG, GIF, WebP, TIFF and BMP"
        )
    return f"cannot decode the image ({type(exc).__name__}: {exc})"


def _result_problem(result: object, size_hw: tuple[int, int]) -> str | None:
    height, width = size_hw
    if isinstance(result, Image.Image):
        if result.mode == "RGB" and result.size == (width, height):
            return None
        return f"a PIL image of mode {result.mode!r} and size {result.size}"
    if isinstance(result, np.ndarray):
        if result.dtype == np.uint8 and result.shape == (height, width, 3):
            return None
        return f"an array of dtype {result.dtype} and shape {result.shape}"
    return f"a {type(result).__name__}"


def _check_image_size(image_size: object) -> tuple[int, int]:
    if isinstance(image_size, tuple | list) and len(image_size) == 2:
        height, width = image_size
        if _positive_int(height) and _positive_int(width):
            return (height, width)
    raise ConfigError(
        f"image_size must be (height, width) with two positive ints, got {image_size!r}; "
        "e.g. image_size=(224, 224)."
    )


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _bind_custom(
    spec: TransformSpec, transforms: Mapping[str, CustomTransform]
) -> tuple[Bound, ...]:
    missing = [name for name in spec.plugin_names if name not in transforms]
    if missing:
        loaded = ", ".join(sorted(transforms)) or "none"
        raise ConfigError(
            f"The augment spec uses custom transform(s) {missing!r}, which no loaded plugin "
            f"defines (loaded: {loaded}). Start the producer with --plugin MODULE, naming the "
            f"module whose ZEROFEED_TRANSFORMS defines them."
        )
    return tuple((name, transforms[name], params) for name, params in spec.custom)

"""The producer's optional fast paths: which this install has, and why not when it lacks one.

Native modules make the same pixels faster (``docs/performance.md``): zerofeed's own C
accelerators, ``_jpegwindow`` (decodes only a JPEG's crop window, linked against libjpeg-turbo),
``_pngdecode`` (a PNG inflated by libdeflate and resized row by row) and ``_resample`` (Pillow's
resize arithmetic, straight into the batch), all built by ``setup.py`` and shipped inside
zerofeed's binary wheels; and simplejpeg. Each is imported here
once; :mod:`~zerofeed.producer.decode` and :mod:`~zerofeed.producer.resize` use what this module
found, and :func:`decode_path` says what that means for speed, for the producer's start-up log and
for ``zerofeed status``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

__all__ = ["DecodePath", "decode_path", "jpegwindow", "pngdecode", "resample", "simplejpeg"]

try:  # decodes only the crop window: the same pixels as Pillow's decoder
    from zerofeed.producer import _jpegwindow as jpegwindow

    _JPEGWINDOW_ERROR = ""
except ImportError as exc:  # pragma: no cover - built without libjpeg-turbo's headers
    jpegwindow = None  # type: ignore[assignment]
    _JPEGWINDOW_ERROR = str(exc)
try:  # PNG inflated by libdeflate, resized row by row: the same pixels as Pillow's
    from zerofeed.producer import _pngdecode as pngdecode

    _PNGDECODE_ERROR = ""
except ImportError as exc:  # pragma: no cover - built without libdeflate's headers
    pngdecode = None  # type: ignore[assignment]
    _PNGDECODE_ERROR = str(exc)
try:  # Pillow's resize arithmetic in C, into the batch
    from zerofeed.producer import _resample as resample

    _RESAMPLE_ERROR = ""
except ImportError as exc:  # pragma: no cover - built without a C compiler
    resample = None  # type: ignore[assignment]
    _RESAMPLE_ERROR = str(exc)
try:  # libjpeg-turbo without Pillow's overhead, where it has a wheel
    import simplejpeg
except ImportError:  # pragma: no cover - no wheel for this platform
    simplejpeg = None

_BUILD_HINT = (
    "install a zerofeed wheel, which carries them, or build from source with a C compiler and "
    "libjpeg-turbo's and libdeflate's headers (Debian/Ubuntu: apt-get install gcc "
    "libjpeg62-turbo-dev libdeflate-dev)"
)


@dataclass(frozen=True, kw_only=True)
class DecodePath:
    """How this producer decodes and resizes: the same pixels either way, at different speeds."""

    accelerated: bool
    """Every C accelerator loaded: crop-window JPEG decode, PNG decode and resize straight into
    the batch."""
    summary: str
    """One line for logs and ``zerofeed status``, with the reason when not accelerated."""


def _why_missing(module: str, error: str) -> str:
    if importlib.util.find_spec(f"zerofeed.producer.{module}") is None:
        return f"{module} was not built when zerofeed was installed"
    return f"{module} did not load: {error}"


def decode_path() -> DecodePath:
    """Which decode and resize path this install takes, and why when it is not the fast one."""
    missing = [
        _why_missing(name, error)
        for name, loaded, error in (
            ("_jpegwindow", jpegwindow is not None, _JPEGWINDOW_ERROR),
            ("_pngdecode", pngdecode is not None, _PNGDECODE_ERROR),
            ("_resample", resample is not None, _RESAMPLE_ERROR),
        )
        if not loaded
    ]
    if not missing:
        return DecodePath(
            accelerated=True,
            summary="accelerated (C crop-window JPEG decode and resize, libjpeg-turbo; "
            "PNG with libdeflate)",
        )
    fallback = "simplejpeg and Pillow" if simplejpeg is not None else "Pillow"
    return DecodePath(
        accelerated=False,
        summary=f"portable ({fallback}: the same pixels, more slowly): "
        + "; ".join(missing)
        + f"; {_BUILD_HINT}",
    )

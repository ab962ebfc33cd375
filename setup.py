"""Optional C accelerators for the producer; everything else is in pyproject.toml.

All are optional: without a C compiler, or without libjpeg-turbo's or libdeflate's headers
(Debian/Ubuntu: ``apt-get install libjpeg62-turbo-dev libdeflate-dev``), the install still
succeeds and producers decode with simplejpeg / Pillow and resize with Pillow, giving the same
pixels, more slowly.
"""

from setuptools import Extension, setup

_FLAGS = ["-O3", "-std=c99", "-Wall"]
_CORE = "zerofeed/producer/_resample_core.h"  # the resize both extensions share

setup(
    ext_modules=[
        Extension(
            "zerofeed.producer._resample",
            ["zerofeed/producer/_resample.c"],
            depends=[_CORE],
            extra_compile_args=_FLAGS,
            optional=True,
        ),
        Extension(
            "zerofeed.producer._jpegwindow",
            ["zerofeed/producer/_jpegwindow.c"],
            depends=[
                _CORE,
                "zerofeed/producer/_jpeg_huffman.h",
                "zerofeed/producer/_jpeg_progressive.h",
            ],
            libraries=["jpeg"],
            extra_compile_args=_FLAGS,
            optional=True,
        ),
        Extension(
            "zerofeed.producer._pngdecode",
            ["zerofeed/producer/_pngdecode.c"],
            depends=[_CORE],
            libraries=["deflate"],
            extra_compile_args=_FLAGS,
            optional=True,
        ),
    ]
)

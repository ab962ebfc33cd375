"""The fast paths give exactly the pixels of the slow ones, so mixed producers agree.

zerofeed's C accelerators (a windowed JPEG decoder and Pillow's resize into a batch slot),
simplejpeg and Pillow are interchangeable: each test runs the fast and the fallback path on the
same input and compares bytes.
"""

from __future__ import annotations

import io
import pathlib
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.images import (
    KINDS,
    PNG_SIGNATURE,
    photo,
    png_bytes,
    png_chunk,
    png_image_data,
    random_window,
    write_image,
    write_truncated_jpeg,
)
from zerofeed.common.errors import BadSampleError
from zerofeed.common.plan import sample_rng
from zerofeed.common.transforms import parse_augment
from zerofeed.producer import decode, resize
from zerofeed.producer.geometry import scaled_size
from zerofeed.producer.render import Renderer


def test_the_accelerators_are_built_here() -> None:
    # Without them every comparison below would compare a fallback with itself.
    assert decode._jpegwindow is not None, "build with libjpeg-turbo headers: see setup.py"
    assert resize._resample is not None, "build with a C compiler: see setup.py"
    assert decode._pngdecode is not None, "build with libdeflate's headers: see setup.py"


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_windowed_decode_equals_every_full_decode(
    kind: str, progressive: bool, scale: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    subsampling, mode = KINDS[kind]
    rng = np.random.default_rng([scale, progressive, subsampling, len(mode)])
    for size in ((517, 333), (640, 480), (97, 61)):
        data = photo(
            size,
            int(rng.integers(1000)),
            subsampling=subsampling,
            progressive=progressive,
            mode=mode,
        )
        image = decode.open_image(data)
        scaled = scaled_size(image.size, scale)
        windows = [(0, 0, *scaled)] + [random_window(scaled, rng) for _ in range(6)]
        with monkeypatch.context() as patch:
            patch.setattr(decode, "_jpegwindow", None)
            via_simplejpeg = [  # Pillow's for CMYK, which draws on a freshly opened image
                decode.decode_jpeg_window(decode.open_image(data), data, scale, w) for w in windows
            ]
            patch.setattr(decode, "_simplejpeg", None)
            via_pillow = [
                decode.decode_jpeg_window(decode.open_image(data), data, scale, w) for w in windows
            ]
        for window, slow, slowest in zip(windows, via_simplejpeg, via_pillow, strict=True):
            fast = decode.decode_jpeg_window(image, data, scale, window)
            assert fast is not None and slow is not None and slowest is not None
            assert fast.shape == (window[3] - window[1], window[2] - window[0], 4)
            assert np.array_equal(fast, slow), (size, window)
            assert np.array_equal(fast[..., :3], slowest[..., :3]), (size, window)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("widest", [2, 1, 0], ids=["avx2", "sse4.1", "plain-c"])
def test_decode_and_resize_in_one_pass_equals_the_two_steps(
    kind: str, widest: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows resized as they are decoded give the pixels of Pillow resizing the decoded window."""
    assert decode._jpegwindow is not None
    subsampling, mode = KINDS[kind]
    rng = np.random.default_rng([widest, subsampling, len(mode)])
    cases = 0
    for size in ((517, 333), (640, 480), (97, 61)):
        data = photo(size, int(rng.integers(1000)), subsampling=subsampling, mode=mode)
        image = decode.open_image(data)
        for scale in (1, 2, 8):
            scaled = scaled_size(image.size, scale)
            for window in [(0, 0, *scaled)] + [random_window(scaled, rng) for _ in range(5)]:
                width, height = window[2] - window[0], window[3] - window[1]
                left, right = sorted(rng.uniform(0, width, 2))
                top, bottom = sorted(rng.uniform(0, height, 2))
                box = (
                    left,
                    top,
                    min(width, max(right, left + 0.5)),
                    min(height, max(bottom, top + 0.5)),
                )
                out_size = (
                    (224, 224) if cases % 2 else tuple(int(v) for v in rng.integers(1, 300, 2))
                )
                hflip, vflip = (bool(v) for v in rng.integers(0, 2, 2))
                fused = np.empty((out_size[1], out_size[0], 3), np.uint8)
                decode._jpegwindow.decode_resized(
                    data,
                    8 // scale,
                    window[0],
                    window[1],
                    width,
                    height,
                    box,
                    fused,
                    *out_size,
                    hflip,
                    vflip,
                    widest,
                )
                stepwise = np.empty_like(fused)
                with monkeypatch.context() as patch:
                    patch.setattr(decode, "_jpegwindow", None)
                    patch.setattr(resize, "_resample", None)
                    assert decode.decode_jpeg_window_resized(  # a fresh image: Pillow drafts it
                        decode.open_image(data),
                        data,
                        scale,
                        window,
                        box,
                        stepwise,
                        hflip=hflip,
                        vflip=vflip,
                    )
                assert np.array_equal(fused, stepwise), (size, scale, window, box, out_size)
                cases += 1
    assert cases == 54


def test_decode_and_resize_in_one_pass_reports_corrupt_data() -> None:
    data = photo((320, 240), 5)
    damaged = data[: len(data) // 3]
    out = np.empty((224, 224, 3), np.uint8)
    with pytest.raises(OSError, match="corrupt JPEG"):
        decode.decode_jpeg_window_resized(None, damaged, 1, (0, 0, 320, 240), (0, 0, 320, 240), out)


def test_windowed_decode_declines_what_it_does_not_handle() -> None:
    for mode, fmt in (("RGB", "PNG"), ("LA", "PNG"), ("RGB", "WEBP")):
        buffer = io.BytesIO()
        Image.new(mode, (40, 30)).save(buffer, fmt)
        data = buffer.getvalue()
        assert decode.decode_jpeg_window(decode.open_image(data), data, 1, (0, 0, 4, 4)) is None


def test_windowed_decode_reports_corrupt_data_in_the_window() -> None:
    data = photo((320, 240), 5)
    damaged = data[: len(data) // 3]
    with pytest.raises(OSError, match="corrupt JPEG"):
        decode.decode_jpeg_window(decode.open_image(damaged), damaged, 1, (0, 0, 320, 240))


def test_accelerator_arguments_are_checked() -> None:
    assert decode._jpegwindow is not None and resize._resample is not None
    data = photo((64, 48), 1)
    with pytest.raises(ValueError, match="outside"):
        decode._jpegwindow.decode_window(data, 8, 60, 0, 8, 8, np.empty((8, 8, 4), np.uint8))
    with pytest.raises(TypeError, match="bytes"):
        decode._jpegwindow.decode_window(data, 8, 0, 0, 8, 8, np.empty((8, 7, 4), np.uint8))
    with pytest.raises(ValueError, match="scale_num"):
        decode._jpegwindow.decode_window(data, 9, 0, 0, 8, 8, np.empty((8, 8, 4), np.uint8))
    pixels, out = np.zeros((10, 10, 4), np.uint8), np.empty((5, 5, 3), np.uint8)
    with pytest.raises(ValueError, match="not inside"):
        resize._resample.resize_into(
            pixels, 10, 10, (0.0, 0.0, 11.0, 10.0), out, 5, 5, False, False
        )
    with pytest.raises(TypeError, match="RGB"):
        resize._resample.resize_into(pixels, 10, 10, (0.0, 0.0, 9.0, 9.0), out, 5, 4, False, False)


@pytest.mark.parametrize("widest", [2, 1, 0], ids=["avx2", "sse4.1", "plain-c"])
def test_resize_into_equals_pillow(monkeypatch: pytest.MonkeyPatch, widest: int) -> None:
    assert resize._resample is not None
    rng = np.random.default_rng(7)
    cases = 0
    for _ in range(60):
        width, height = (int(v) for v in rng.integers(1, 400, 2))
        pixels = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
        left, right = sorted(rng.uniform(0, width, 2))
        top, bottom = sorted(rng.uniform(0, height, 2))
        whole = (0.0, 0.0, float(width), float(height))
        for box in (whole, (left, top, max(right, left + 0.5), max(bottom, top + 0.5))):
            for out_size in ((224, 224), (int(rng.integers(1, 300)), int(rng.integers(1, 300)))):
                hflip, vflip = (bool(v) for v in rng.integers(0, 2, 2))
                fast = np.empty((out_size[1], out_size[0], 3), np.uint8)
                resize._resample.resize_into(
                    pixels, width, height, box, fast, *out_size, hflip, vflip, widest
                )
                slow = np.empty_like(fast)
                with monkeypatch.context() as patch:
                    patch.setattr(resize, "_resample", None)
                    resize.resize_into(pixels, box, slow, hflip=hflip, vflip=vflip)
                assert np.array_equal(fast, slow), (width, height, box, out_size)
                cases += 1
    assert cases == 240


PNG_CHANNELS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


def pillow_resized(
    data: bytes, box: tuple[float, float, float, float], out_size: tuple[int, int]
) -> np.ndarray:
    """The fallback: Pillow decodes, ``convert("RGB")`` drops alpha, and Pillow's bilinear resize
    runs its two passes, horizontal first (:func:`resize.resize_into` without ``_resample``)."""
    with Image.open(io.BytesIO(data)) as image:
        rgbx = np.asarray(image.convert("RGB").convert("RGBX"))
    out = np.empty((out_size[1], out_size[0], 3), np.uint8)
    resize_with_pillow(rgbx, box, out)
    return out


@pytest.mark.parametrize("widest", [2, 1, 0], ids=["avx2", "sse4.1", "plain-c"])
@pytest.mark.parametrize("mode", sorted(PNG_CHANNELS))
def test_png_decode_and_resize_equals_pillow_for_every_row_filter(mode: str, widest: int) -> None:
    assert decode._pngdecode is not None
    rng = np.random.default_rng(PNG_CHANNELS[mode])
    cases = 0
    for size in ((53, 37), (1, 5), (301, 211)):
        shape = (size[1], size[0], PNG_CHANNELS[mode])
        pixels = rng.integers(0, 256, shape, dtype=np.uint8).squeeze(axis=2 if mode == "L" else ())
        for filters in ((0, 1, 2, 3, 4), (4,), (3, 1)):
            data = png_bytes(pixels, mode, filters=filters)
            left, right = sorted(rng.uniform(0, size[0], 2))
            top, bottom = sorted(rng.uniform(0, size[1], 2))
            whole = (0.0, 0.0, float(size[0]), float(size[1]))
            for box in (whole, (left, top, right + 1e-3, bottom + 1e-3)):
                out_size = (int(rng.integers(1, 120)), int(rng.integers(1, 120)))
                hflip, vflip = (bool(v) for v in rng.integers(0, 2, 2))
                fast = np.empty((out_size[1], out_size[0], 3), np.uint8)
                assert decode._pngdecode.decode_resized(
                    data, box, fast, *out_size, hflip, vflip, widest
                )
                expected = pillow_resized(data, box, out_size)
                expected = expected[:: -1 if vflip else 1, :: -1 if hflip else 1]
                assert np.array_equal(fast, expected), (mode, size, filters, box, out_size)
                cases += 1
    assert cases == 18


def test_png_decode_of_pillows_own_files_equals_pillow() -> None:
    """Pillow's encoder: its own filter choice and image data split into 64 KiB chunks; also a
    greyscale and an RGB file with a transparent colour (tRNS), which ``convert("RGB")`` ignores."""
    picture = np.asarray(Image.open(io.BytesIO(photo((640, 480), 9))))
    cases = [(mode, {}) for mode in PNG_CHANNELS]
    cases += [("L", {"transparency": 7}), ("RGB", {"transparency": (1, 2, 3)})]
    for mode, options in cases:
        buffer = io.BytesIO()
        Image.fromarray(picture).convert(mode).save(buffer, "PNG", **options)
        data = buffer.getvalue()
        with decode.open_image(data) as image:
            out = np.empty((224, 224, 3), np.uint8)
            box = (100.5, 50.25, 600.0, 470.75)
            assert decode.decode_png_resized(image, data, box, out), mode
        assert np.array_equal(out, pillow_resized(data, box, (224, 224))), mode


def test_png_decode_declines_what_it_does_not_take_and_writes_nothing() -> None:
    pixels = np.random.default_rng(3).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    good = png_bytes(pixels, "RGB")
    rows = zlib.decompress(png_image_data(good))
    stream = zlib.compress(rows)

    def saved(image: Image.Image, **options: object) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, "PNG", **options)
        return buffer.getvalue()

    rgb = Image.fromarray(pixels)
    declined = {
        "palette": saved(rgb.convert("P")),
        "16-bit": saved(Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)),
        "1-bit": saved(rgb.convert("1")),
        "interlaced": png_bytes(pixels, "RGB", interlaced=True),
        "animated": saved(rgb, save_all=True, append_images=[rgb.rotate(90)]),
        "unknown row filter": _with_image_data(good, zlib.compress(b"\x07" + rows[1:])),
        "image data cut short": _with_image_data(good, stream[:-30]),
        "wrong Adler-32": _with_image_data(good, stream[:-1] + bytes([stream[-1] ^ 1])),
        "a row too many": _with_image_data(good, zlib.compress(rows + rows[: 1 + 40 * 3])),
        "chunk past the end": good[: len(good) // 2],
        "no IEND": good[:-12],
        # more than DEFLATE's 1032-fold expansion could fill: declined, nothing allocated
        "header promising 2^29 x 2^31 pixels": _with_header(good, 0x1FFFFFFF, 0x7FFFFFFF),
        "not a PNG": photo((40, 30), 1),
    }
    assert decode._pngdecode is not None
    assert decode._pngdecode.decode_resized(good, (0.0, 0.0, 30.0, 20.0), *_canvas(), False, False)
    for name, data in declined.items():
        out, width, height = _canvas()
        assert not decode._pngdecode.decode_resized(
            data, (0.0, 0.0, 30.0, 20.0), out, width, height, False, False
        ), name
        assert (out == 77).all(), name
    with pytest.raises(ValueError, match=r"box \(0, 0, 41, 30\) is not inside the 40x30 image"):
        decode._pngdecode.decode_resized(good, (0.0, 0.0, 41.0, 30.0), *_canvas(), False, False)


def _canvas() -> tuple[np.ndarray, int, int]:
    return np.full((8, 8, 3), 77, np.uint8), 8, 8


def _with_header(data: bytes, width: int, height: int) -> bytes:
    """``data`` with its header's size replaced (and the header's CRC made right again)."""
    header = png_chunk(b"IHDR", struct.pack(">II", width, height) + data[24:29])
    return PNG_SIGNATURE + header + data[8 + 25 :]


def _with_image_data(data: bytes, stream: bytes) -> bytes:
    """``data`` (a signature, IHDR, image data chunks, IEND) with one IDAT chunk of ``stream``."""
    return data[: 8 + 25] + png_chunk(b"IDAT", stream) + data[-12:]


def test_png_decode_of_damaged_image_data_gives_pillows_pixels_or_declines() -> None:
    """Random damage to the rows (filter bytes, pixels, length) and to the header, in valid zlib
    streams: whatever the accelerator takes, Pillow decodes to the same pixels; the rest it
    declines. (A longer run of this, 40,000 files, also under AddressSanitizer, found nothing.)"""
    assert decode._pngdecode is not None
    rng = np.random.default_rng(11)
    taken = declined = 0
    for case in range(400):
        mode = sorted(PNG_CHANNELS)[case % 4]
        shape = (int(rng.integers(5, 40)), int(rng.integers(5, 40)), PNG_CHANNELS[mode])
        pixels = rng.integers(0, 256, shape, dtype=np.uint8).squeeze(axis=2 if mode == "L" else ())
        good = png_bytes(pixels, mode)
        rows = bytearray(zlib.decompress(png_image_data(good)))
        for _ in range(int(rng.integers(1, 6))):
            rows[int(rng.integers(0, len(rows)))] = int(rng.integers(0, 6 if case % 2 else 256))
        if case % 5 == 0:
            rows = rows[: int(rng.integers(0, len(rows)))]
        data = _with_image_data(good, zlib.compress(bytes(rows)))
        try:
            with Image.open(io.BytesIO(data)) as image:
                expected = np.asarray(image.convert("RGB").convert("RGBX"))
        except (OSError, SyntaxError, ValueError):
            expected = None
        box, out = (0.0, 0.0, 4.5, 5.0), np.full((6, 7, 3), 77, np.uint8)
        if decode._pngdecode.decode_resized(data, box, out, 7, 6, False, False):
            taken += 1
            assert expected is not None, case  # Pillow reads what the accelerator read
            reference = np.empty_like(out)
            resize_with_pillow(expected, box, reference)
            assert np.array_equal(out, reference), case
        else:
            declined += 1
            assert (out == 77).all(), case
    assert taken > 200 and declined > 50, (taken, declined)


def resize_with_pillow(
    rgbx: np.ndarray, box: tuple[float, float, float, float], out: np.ndarray
) -> None:
    """:func:`resize.resize_into` without the C resize: Pillow's two single-axis calls."""
    saved, resize._resample = resize._resample, None
    try:
        resize.resize_into(rgbx, box, out)
    finally:
        resize._resample = saved


def test_a_damaged_png_is_the_bad_sample_pillow_makes_of_it(tmp_path: pathlib.Path) -> None:
    pixels = np.random.default_rng(4).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    good = png_bytes(pixels, "RGB")
    rows = zlib.decompress(png_image_data(good))
    path = tmp_path / "damaged.png"
    path.write_bytes(_with_image_data(good, zlib.compress(b"\x09" + rows[1:])))  # no filter 9
    renderer = Renderer(image_size=(16, 16), spec=parse_augment({}))
    with pytest.raises(BadSampleError) as caught:
        renderer.render_into(path, sample_rng(0, 0, 0), np.empty((16, 16, 3), np.uint8))
    assert caught.value.kind == "decode"


@pytest.mark.parametrize(
    "augment",
    [
        {
            "random_resized_crop": {"scale": [0.08, 1.0]},
            "horizontal_flip": True,
            "vertical_flip": True,
        },
        {"random_resized_crop": {"scale": [0.2, 1.0]}, "horizontal_flip": True, "brightness": 0.2},
        {},
    ],
    ids=["geometry-only", "with-photometric", "plain-resize"],
)
def test_rendered_batches_do_not_depend_on_the_accelerators(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, augment: dict[str, object]
) -> None:
    paths = [
        write_image(
            tmp_path / f"{i}.jpg",
            size=(300 + 37 * i, 200 + 23 * i),
            seed=i,
            exif_orientation=i % 9 or None,
        )
        for i in range(9)
    ]
    paths.append(write_image(tmp_path / "gray.jpg", mode="L", size=(250, 180)))
    paths.append(
        write_image(tmp_path / "gray-6.jpg", mode="L", size=(260, 170), exif_orientation=6)
    )
    paths.append(write_image(tmp_path / "cmyk.jpg", mode="CMYK", size=(250, 180)))
    paths.append(
        write_image(tmp_path / "cmyk-3.jpg", mode="CMYK", size=(240, 190), exif_orientation=3)
    )
    paths.append(write_image(tmp_path / "p.png", size=(250, 180)))
    for i, mode in enumerate(("L", "LA", "RGBA", "P")):  # P: Pillow decodes it on any install
        paths.append(write_image(tmp_path / f"{mode}.png", mode=mode, size=(230 + 9 * i, 170)))
    paths.append(write_image(tmp_path / "p-6.png", size=(210, 260), exif_orientation=6))
    paths.append(write_image(tmp_path / "p-2.png", size=(210, 160), exif_orientation=2))
    paths.append(write_image(tmp_path / "p.webp", size=(220, 150)))
    # Wider output than input, shorter than it: a single Pillow resize would run the vertical
    # pass first here; every path runs the horizontal one first.
    paths.append(write_image(tmp_path / "narrow.png", size=(60, 200)))
    paths.append(write_image(tmp_path / "narrow.webp", size=(60, 200)))
    paths.append(tmp_path / "big.jpg")
    paths[-1].write_bytes(photo((1800, 1300), 3))  # decoded at 1/4 for a 96 px output
    paths.append(tmp_path / "big-gray.jpg")
    paths[-1].write_bytes(photo((1800, 1300), 4, mode="L", progressive=True))
    spec = parse_augment(augment)

    def render_all() -> np.ndarray:
        out = np.empty((len(paths), 96, 112, 3), np.uint8)
        renderer = Renderer(image_size=(96, 112), spec=spec)
        for row, path in enumerate(paths):
            renderer.render_into(path, sample_rng(1, 0, row), out[row])
        return out

    fast = render_all()
    monkeypatch.setattr(decode, "_jpegwindow", None)
    monkeypatch.setattr(decode, "_pngdecode", None)
    monkeypatch.setattr(resize, "_resample", None)
    assert np.array_equal(fast, render_all())
    monkeypatch.setattr(decode, "_simplejpeg", None)
    assert np.array_equal(fast, render_all())


def test_a_truncated_jpeg_is_a_bad_sample_on_the_fast_path(tmp_path: pathlib.Path) -> None:
    path = write_truncated_jpeg(tmp_path / "cut.jpg", size=(320, 240))
    renderer = Renderer(image_size=(64, 64), spec=parse_augment({}))
    with pytest.raises(BadSampleError) as caught:
        renderer.render_into(path, sample_rng(0, 0, 0), np.empty((64, 64, 3), np.uint8))
    assert caught.value.kind == "decode"


def test_only_plain_jpegs_skip_pillow(tmp_path: pathlib.Path) -> None:
    """Files whose header could change what Pillow reports (orientation, format, mode) are opened
    by Pillow; plain colour, greyscale and CMYK JPEGs are sized by libjpeg alone."""
    plain = write_image(tmp_path / "plain.jpg", size=(64, 48))
    assert decode.plain_jpeg_size(plain.read_bytes()) == (64, 48)
    for mode, size in (("L", (50, 40)), ("CMYK", (30, 70))):
        path = write_image(tmp_path / f"{mode}.jpg", mode=mode, size=size)
        assert decode.plain_jpeg_size(path.read_bytes()) == size, mode
    others = [
        write_image(tmp_path / "exif.jpg", exif_orientation=1),
        write_image(tmp_path / "grey-exif.jpg", mode="L", exif_orientation=1),
        write_image(tmp_path / "cmyk-exif.jpg", mode="CMYK", exif_orientation=1),
        write_image(tmp_path / "p.png"),
    ]
    for path in others:
        assert decode.plain_jpeg_size(path.read_bytes()) is None, path.name
    mpo = io.BytesIO()
    Image.new("RGB", (40, 30)).save(
        mpo, "MPO", save_all=True, append_images=[Image.new("RGB", (40, 30))]
    )
    assert decode.plain_jpeg_size(mpo.getvalue()) is None, "MPO"
    # An XMP packet (which may carry an orientation) in an APP1 segment right after SOI, written
    # by hand: Pillow's `xmp=` save option is newer than the lowest Pillow supported.
    packet = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>"
    data = plain.read_bytes()
    xmp = data[:2] + b"\xff\xe1" + (len(packet) + 2).to_bytes(2, "big") + packet + data[2:]
    assert Image.open(io.BytesIO(xmp)).size == (64, 48)  # still a valid JPEG
    assert decode.plain_jpeg_size(xmp) is None, "XMP"
    cut = plain.read_bytes()[:40]
    assert decode.plain_jpeg_size(cut) is None


def test_a_plain_jpeg_over_the_pixel_limit_is_refused_before_decoding(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_image(tmp_path / "big.jpg", size=(300, 200))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)
    renderer = Renderer(image_size=(64, 64), spec=parse_augment({}))
    with pytest.raises(BadSampleError) as caught:
        renderer.render_into(path, sample_rng(0, 0, 0), np.empty((64, 64, 3), np.uint8))
    assert caught.value.kind == "too_large"

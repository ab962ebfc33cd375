"""zerofeed's Huffman decoder gives libjpeg's coefficients, or hands the image back to libjpeg.

The windowed JPEG accelerator reads sequential and progressive scans with its own Huffman
decoder (``zerofeed/producer/_jpeg_huffman.h`` and ``_jpeg_progressive.h``). Each test decodes the same JPEG with libjpeg's Huffman
decoder (``LIBJPEG``), with zerofeed's where it can (``FAST``, what producers use), and with
zerofeed's alone (``FAST_ONLY``: an error where it declines, to show which path ran; and
``FAST_PORTABLE``, the same without the CPU's instruction-set extensions), and compares the
bytes, or the errors.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image, ImageFile

from tests.images import KINDS, photo, random_window
from zerofeed.producer import decode
from zerofeed.producer.geometry import scaled_size

LIBJPEG, FAST, FAST_ONLY, FAST_PORTABLE = 0, 1, 2, 3
DECLINED = "the fast Huffman decoder declined this JPEG"
FAST_TABLE_BITS = 10  # HUFFMAN_FAST_BITS: longer codes take the bit-by-bit path

Window = tuple[int, int, int, int, int]  # scale_num, x0, y0, width, height


def decode_window(data: bytes, window: Window, entropy: int) -> np.ndarray | str:
    """The window's RGB pixels, or the decoder's error message."""
    if decode._jpegwindow is None:
        pytest.fail("build with libjpeg-turbo headers: see setup.py")
    scale_num, x0, y0, width, height = window
    out = np.zeros((height, width, 4), np.uint8)
    try:
        decode._jpegwindow.decode_window(data, scale_num, x0, y0, width, height, out, entropy)
    except ValueError as error:
        return str(error)
    return out[..., :3]


def decode_resized(data: bytes, window: Window, entropy: int) -> np.ndarray | str:
    """The window resized to 37x29 (flipped both ways), or the decoder's error message."""
    if decode._jpegwindow is None:
        pytest.fail("build with libjpeg-turbo headers: see setup.py")
    scale_num, x0, y0, width, height = window
    out = np.zeros((29, 37, 3), np.uint8)
    box = (0.0, 0.0, float(width), float(height))
    try:
        decode._jpegwindow.decode_resized(
            data, scale_num, x0, y0, width, height, box, out, 37, 29, True, True, 2, entropy
        )
    except ValueError as error:
        return str(error)
    return out


def same(left: np.ndarray | str, right: np.ndarray | str) -> bool:
    if isinstance(left, str) or isinstance(right, str):
        return left == right
    return np.array_equal(left, right)


def assert_fast_gives_libjpegs(data: bytes, window: Window, context: object = None) -> None:
    """zerofeed's decoder takes the JPEG, with the CPU's extensions and without, and gives the
    window's pixels libjpeg's decoder gives."""
    libjpeg = decode_window(data, window, LIBJPEG)
    for entropy in (FAST_ONLY, FAST_PORTABLE):
        fast = decode_window(data, window, entropy)
        assert not isinstance(fast, str), (context, window, fast)
        assert same(fast, libjpeg), (context, window)


def windows(data: bytes, rng: np.random.Generator, count: int) -> list[Window]:
    """The whole image at every DCT scale, then ``count`` random windows at random scales."""
    size = decode.open_image(data).size
    whole = [(scale_num, 0, 0, *scaled_size(size, 8 // scale_num)) for scale_num in (8, 4, 2, 1)]
    chosen: list[Window] = []
    for _ in range(count):
        scale_num = int(rng.choice([1, 2, 3, 4, 5, 6, 7, 8]))
        scaled = (-(-size[0] * scale_num // 8), -(-size[1] * scale_num // 8))
        x0, y0, x1, y1 = random_window(scaled, rng)
        chosen.append((scale_num, x0, y0, x1 - x0, y1 - y0))
    return whole + chosen


def segments(data: bytes) -> list[tuple[int, bytes]]:
    """A JPEG's marker segments (marker, payload), in order, past the scans' entropy-coded data."""
    found = []
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF and data[at + 1] != 0xD9:
        marker, size = data[at + 1], struct.unpack(">H", data[at + 2 : at + 4])[0]
        found.append((marker, data[at + 4 : at + 2 + size]))
        at += 2 + size
        if marker == 0xDA:  # to the marker after the scan (not a stuffed byte or restart)
            while at + 1 < len(data) and not (
                data[at] == 0xFF and data[at + 1] != 0 and not 0xD0 <= data[at + 1] <= 0xD7
            ):
                at += 1
    return found


def code_lengths(data: bytes) -> set[int]:
    """The lengths of the Huffman codes a JPEG's DHT segments define."""
    lengths: set[int] = set()
    for marker, payload in segments(data):
        at = 0
        while marker == 0xC4 and at < len(payload):
            counts = payload[at + 1 : at + 17]
            lengths |= {length + 1 for length, count in enumerate(counts) if count}
            at += 17 + sum(counts)
    return lengths


def scan_kinds(data: bytes) -> set[str]:
    """The kinds of scan a JPEG holds: DC or AC, first pass or refinement."""
    kinds = set()
    for marker, payload in segments(data):
        if marker == 0xDA:
            components = payload[0]
            start, refinement = payload[1 + 2 * components], payload[3 + 2 * components] >> 4
            kinds.add(("AC" if start else "DC") + (" refine" if refinement else " first"))
    return kinds


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("quality", [30, 90, 100])
@pytest.mark.parametrize("progressive", [False, True])
def test_jpegs_take_the_fast_decoder_and_give_libjpegs_pixels(
    kind: str, quality: int, progressive: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sequential scans, and every kind of progressive one: DC first passes and refinements, AC
    spectral bands, their first passes to a few bits and the refinements, with end-of-band runs
    across blocks."""
    monkeypatch.setattr(ImageFile, "MAXBLOCK", 1 << 22)  # Pillow's guess is short at quality 100
    subsampling, mode = KINDS[kind]
    rng = np.random.default_rng([quality, subsampling, len(mode), progressive])
    for size in ((517, 333), (64, 64), (9, 7)):
        data = photo(
            size,
            int(rng.integers(1000)),
            subsampling=subsampling,
            mode=mode,
            quality=quality,
            progressive=progressive,
        )
        if progressive and size[0] > 64:
            assert scan_kinds(data) == {"DC first", "DC refine", "AC first", "AC refine"}
        for window in windows(data, rng, 6):
            assert_fast_gives_libjpegs(data, window, size)
        window = windows(data, rng, 1)[-1]
        assert same(decode_resized(data, window, FAST_ONLY), decode_resized(data, window, LIBJPEG))


@pytest.mark.parametrize("kind", ["4:4:4", "4:2:0", "grey"])
def test_codes_longer_than_the_fast_table_and_the_largest_values(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Optimised tables for noise at quality 100 give codes of up to 16 bits and coefficients of
    every size; blocks alternating black and white give the largest DC differences."""
    monkeypatch.setattr(ImageFile, "MAXBLOCK", 1 << 22)  # optimised noise outgrows Pillow's guess
    subsampling, mode = KINDS[kind]
    rng = np.random.default_rng(len(kind))
    noisy = photo(
        (300, 200),
        3,
        subsampling=subsampling,
        mode=mode,
        quality=100,
        noise=127,
        optimize=True,
    )
    assert max(code_lengths(noisy)) > FAST_TABLE_BITS
    blocks = np.kron(np.indices((25, 38)).sum(axis=0) % 2, np.ones((8, 8))) * 255
    buffer = io.BytesIO()
    Image.fromarray(blocks.astype(np.uint8)).convert(mode).save(
        buffer, "JPEG", quality=100, subsampling=subsampling
    )
    for data in (noisy, buffer.getvalue()):
        for window in windows(data, rng, 8):
            assert_fast_gives_libjpegs(data, window)


@pytest.mark.parametrize("kind", ["4:2:0", "4:4:4", "grey", "cmyk"])
def test_blocks_that_end_on_their_last_coefficient_leave_the_next_code_to_the_next_block(
    kind: str,
) -> None:
    """A block whose 64th coefficient is nonzero ends without an end-of-block code: what follows
    is the next block's DC code. Faint noise at quality 100 gives many such blocks, with a small
    last coefficient (a short code, where the fast table reads two symbols at once) and then a
    DC code that the AC table also reads as a short code (the standard tables' ``00``)."""
    subsampling, mode = KINDS[kind]
    rng = np.random.default_rng([subsampling, len(mode), 63])
    for seed in range(4):
        data = photo((128, 96), seed, subsampling=subsampling, mode=mode, quality=100, noise=3)
        for window in windows(data, rng, 2):
            assert_fast_gives_libjpegs(data, window, seed)


@pytest.mark.parametrize("kind", ["4:2:0", "4:4:4", "grey", "cmyk"])
@pytest.mark.parametrize(
    "restarts",
    [{"restart_marker_blocks": 1}, {"restart_marker_blocks": 3}, {"restart_marker_rows": 1}],
)
def test_scans_with_restart_markers_take_the_fast_decoder(
    kind: str, restarts: dict[str, int]
) -> None:
    """After each interval the DC predictions start again from 0, past the next RSTn marker."""
    subsampling, mode = KINDS[kind]
    rng = np.random.default_rng([*restarts.values(), subsampling, len(mode)])
    for size in ((203, 131), (61, 45)):
        data = photo(size, int(rng.integers(1000)), subsampling=subsampling, mode=mode, **restarts)
        assert b"\xff\xdd" in data  # a DRI segment: restart markers follow
        for window in windows(data, rng, 6):
            assert_fast_gives_libjpegs(data, window, size)


@pytest.mark.parametrize("kind", ["4:2:0", "grey", "cmyk"])
def test_progressive_scans_with_restart_markers_long_codes_and_the_largest_values(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Restart intervals reset the DC predictions and end-of-band runs; noise at quality 100 gives
    codes longer than the fast table and refinements of nearly every coefficient."""
    monkeypatch.setattr(ImageFile, "MAXBLOCK", 1 << 22)  # optimised noise outgrows Pillow's guess
    subsampling, mode = KINDS[kind]
    rng = np.random.default_rng([subsampling, len(mode), 2])
    noisy = photo(
        (300, 200), 3, subsampling=subsampling, mode=mode, quality=100, noise=127, progressive=True
    )
    assert max(code_lengths(noisy)) > FAST_TABLE_BITS
    blocks = np.kron(np.indices((25, 38)).sum(axis=0) % 2, np.ones((8, 8))) * 255
    buffer = io.BytesIO()
    Image.fromarray(blocks.astype(np.uint8)).convert(mode).save(
        buffer, "JPEG", quality=100, subsampling=subsampling, progressive=True
    )
    restarts = [
        photo((203, 131), 4, subsampling=subsampling, mode=mode, progressive=True, **options)
        for options in ({"restart_marker_blocks": 1}, {"restart_marker_rows": 1})
    ]
    assert all(b"\xff\xdd" in data for data in restarts)
    for data in (noisy, buffer.getvalue(), *restarts):
        for window in windows(data, rng, 6):
            assert_fast_gives_libjpegs(data, window)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_end_of_band_runs_longer_than_two_to_the_fourteen_blocks(mode: str) -> None:
    """A flat image's AC scans are one end-of-band run after another, each as long as a run can
    be (2**14 blocks and up to 2**14 - 1 more in its extra bits): 2048x1024 has 32,768 blocks."""
    pixels = np.full((1024, 2048, 3), 117, np.uint8)
    pixels[:8, :8] = 200  # one block with AC coefficients, so the runs start after it
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, "JPEG", quality=90, progressive=True)
    data = buffer.getvalue()
    rng = np.random.default_rng(len(mode))
    for window in [(8, 0, 0, 2048, 1024), *windows(data, rng, 3)[4:]]:
        assert_fast_gives_libjpegs(data, window)


def damaged(data: bytes, rng: np.random.Generator) -> bytes:
    """``data`` with its scan damaged in one of the ways files are: a byte changed, a 0xFF byte
    or a marker where data should be, a restart marker out of turn, a run of random bytes, fill
    bytes and data where a scan ends, or the file cut short."""
    scan = (
        data.index(b"\xff\xda")
        + 2
        + struct.unpack(">H", data[data.index(b"\xff\xda") + 2 :][:2])[0]
    )
    at = int(rng.integers(scan, len(data) - 2))
    restarts = [
        i for i in range(scan, len(data) - 1) if data[i] == 0xFF and 0xD0 <= data[i + 1] <= 0xD7
    ]
    ends = [
        i for i in range(scan, len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC4, 0xDA)
    ]
    damage = int(rng.integers(8 if restarts else 7))
    if damage == 6:  # fill bytes, then a stuffed 0xFF (data to libjpeg), where a scan ends
        at = int(rng.choice(ends)) if ends else len(data) - 2
        return data[:at] + b"\xff\xff\x00" + rng.bytes(int(rng.integers(1, 9))) + data[at:]
    if damage == 7:  # a restart marker out of turn
        at = int(rng.choice(restarts)) + 1
        return data[:at] + bytes([0xD0 + (data[at] + int(rng.integers(1, 8))) % 8]) + data[at + 1 :]
    if damage == 0:
        return data[:at] + bytes([int(rng.integers(256))]) + data[at + 1 :]
    if damage == 1:
        return data[:at] + b"\xff" + data[at + 1 :]
    if damage == 2:
        marker = bytes([0xFF, int(rng.choice([0xD0, 0xD1, 0xD3, 0xD9, 0xC4, 0xFF, 0x01]))])
        if rng.integers(2):  # in place of the bytes there, which may be a restart marker
            return data[:at] + marker + data[at + 2 :]
        return data[:at] + marker + data[at:]
    if damage == 3:
        return data[:at] + rng.bytes(int(rng.integers(1, 40))) + data[at + 40 :]
    if damage == 4:
        return data[:at]
    return data[:-2]  # no end-of-image marker


def test_damaged_scans_give_libjpegs_pixels_or_libjpegs_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever the damage, the producer's result is libjpeg's: the fast decoder takes what it
    decodes exactly as libjpeg does and declines the rest."""
    monkeypatch.setattr(ImageFile, "MAXBLOCK", 1 << 22)  # optimised noise outgrows Pillow's guess
    rng = np.random.default_rng(2026)
    originals = [
        photo((203, 151), 1),
        photo((96, 80), 2, subsampling=0),
        photo((120, 90), 3, mode="L"),
        photo((160, 112), 4, quality=100, noise=60, optimize=True),
        photo((150, 100), 5, restart_marker_blocks=2),
        photo((203, 151), 6, progressive=True),
        photo((120, 90), 7, mode="L", progressive=True),
        photo((150, 100), 8, progressive=True, restart_marker_blocks=2),
    ]
    taken = declined = 0
    for case in range(640):
        data = damaged(originals[case % len(originals)], rng)
        window = windows(data, rng, 1)[-1] if case % 3 else windows(data, rng, 0)[0]
        libjpeg = decode_window(data, window, LIBJPEG)
        assert not isinstance(libjpeg, str) or libjpeg, case  # an error says what libjpeg found
        assert same(decode_window(data, window, FAST), libjpeg), (case, window)
        only = decode_window(data, window, FAST_ONLY)
        assert same(decode_window(data, window, FAST_PORTABLE), only), (case, window)
        if isinstance(only, str) and only == DECLINED:
            declined += 1
        else:
            taken += 1
            assert same(only, libjpeg), (case, window)
        if case % 4 == 0:  # the resize sees every row again when the fast decoder declines
            assert same(decode_resized(data, window, FAST), decode_resized(data, window, LIBJPEG))
    assert taken > 150 and declined > 80, (taken, declined)

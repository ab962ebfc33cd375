"""The per-sample pipeline on real files: geometry, augmentation, determinism, errors."""

from __future__ import annotations

import os
import pathlib
import warnings
from typing import Literal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from tests.images import (
    assert_quadrants,
    write_image,
    write_not_an_image,
    write_truncated_jpeg,
)
from zerofeed.common.errors import BadSampleError, ConfigError
from zerofeed.common.transforms import CropSpec, TransformSpec, parse_augment
from zerofeed.producer import decode
from zerofeed.producer.geometry import Window, random_resized_crop, scaled_size
from zerofeed.producer.render import BAD_SAMPLE_KINDS, Renderer

WarningFilter = Literal["ignore", "error"]
SIZE = (24, 32)  # (height, width)
EVERYTHING = {
    "random_resized_crop": True,
    "rotate": 20,
    "brightness": 0.3,
    "contrast": 0.3,
    "saturation": 0.3,
    "horizontal_flip": True,
    "vertical_flip": True,
}


def render(
    path: pathlib.Path,
    augment: dict | None = None,
    *,
    seed: int | np.random.Generator = 0,
    size: tuple[int, int] = SIZE,
) -> np.ndarray:
    renderer = Renderer(image_size=size, spec=parse_augment(augment))
    out = np.full((*size, 3), 123, np.uint8)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    renderer.render_into(path, rng, out)
    return out


def bad_sample(path: pathlib.Path, augment: dict | None = None) -> BadSampleError:
    with pytest.raises(BadSampleError) as caught:
        render(path, augment)
    assert caught.value.path == str(path)
    assert caught.value.kind in BAD_SAMPLE_KINDS
    return caught.value


def reference_resize(path: pathlib.Path, box: tuple[int, int, int, int] | None) -> np.ndarray:
    """Full decode, upright, then crop+resize: what the lean path must match."""
    with Image.open(path) as opened:
        upright = ImageOps.exif_transpose(opened).convert("RGB")
    resized = upright.resize((SIZE[1], SIZE[0]), Image.Resampling.BILINEAR, box=box)
    return np.asarray(resized)


def test_plain_resize_writes_every_pixel(tmp_path: pathlib.Path) -> None:
    path = write_image(tmp_path / "p.png", size=(64, 48))
    out = render(path)
    assert out.shape == (*SIZE, 3)
    assert out.dtype == np.uint8
    assert np.array_equal(out, reference_resize(path, None))
    assert_quadrants(out)


def test_output_written_into_a_view_of_a_batch(tmp_path: pathlib.Path) -> None:
    path = write_image(tmp_path / "p.png", size=(64, 48))
    batch = np.zeros((3, *SIZE, 3), np.uint8)
    renderer = Renderer(image_size=SIZE, spec=TransformSpec())
    renderer.render_into(path, np.random.default_rng(0), batch[1])
    assert not batch[0].any()
    assert not batch[2].any()
    assert np.array_equal(batch[1], reference_resize(path, None))


def test_aspect_ratio_is_not_kept_without_crop(tmp_path: pathlib.Path) -> None:
    path = write_image(tmp_path / "wide.png", size=(200, 20))
    out = render(path, size=(40, 40))
    assert out.shape == (40, 40, 3)
    assert_quadrants(out)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".gif", ".webp", ".tif", ".bmp"])
def test_every_format_renders(tmp_path: pathlib.Path, suffix: str) -> None:
    path = write_image(tmp_path / f"p{suffix}", size=(64, 48))
    assert_quadrants(render(path))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_crop_on_oriented_image_matches_full_decode(
    tmp_path: pathlib.Path, orientation: int
) -> None:
    path = write_image(tmp_path / "o.png", size=(90, 70), exif_orientation=orientation)
    crop = {"scale": [0.2, 0.5], "ratio": [0.5, 2.0]}
    for seed in range(5):
        box = random_resized_crop(
            (90, 70), CropSpec(scale=(0.2, 0.5), ratio=(0.5, 2.0)), _rng(seed)
        )
        left, top, width, height = box
        expected = reference_resize(path, (left, top, left + width, top + height))
        out = render(path, {"random_resized_crop": crop}, seed=seed)
        # Resizing the stored pixels, then transposing, may round differently by one: Pillow
        # resizes in two passes (width, then height) with rounding in between.
        difference = np.abs(out.astype(int) - expected)
        assert difference.max() <= (1 if orientation >= 5 else 0)
        assert difference.mean() < 0.5


def test_crop_under_jpeg_draft_matches_full_resolution(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_image(tmp_path / "big.jpg", size=(1600, 1200), exif_orientation=6)
    decoded_sizes = _spy_on_decoded_sizes(monkeypatch)
    crop = CropSpec(scale=(0.3, 0.6), ratio=(0.75, 1.33))
    for seed in range(4):
        left, top, width, height = random_resized_crop((1600, 1200), crop, _rng(seed))
        expected = reference_resize(path, (left, top, left + width, top + height))
        out = render(path, {"random_resized_crop": {"scale": [0.3, 0.6]}}, seed=seed)
        assert np.abs(out.astype(int) - expected).mean() < 3  # JPEG DCT scaling, not a shifted crop
    assert all(
        size[0] < 1600 and size[1] < 1200 for size in decoded_sizes
    )  # stored size is swapped
    assert len(decoded_sizes) == 4


def test_big_jpeg_is_decoded_at_reduced_scale(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_image(tmp_path / "big.jpg", size=(1600, 1200))
    decoded_sizes = _spy_on_decoded_sizes(monkeypatch)
    assert_quadrants(render(path, size=(100, 100)))
    render(path, size=(300, 300))
    render(path, size=(1000, 1000))
    assert decoded_sizes == [(200, 150), (400, 300), (1600, 1200)]


def _spy_on_decoded_sizes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Record the (scaled) image size of every decode, by Pillow or by a windowed decode."""
    sizes: list[tuple[int, int]] = []
    load_rgb, decode_window = decode.load_rgb, decode.decode_jpeg_window_resized

    def spy(image: Image.Image) -> Image.Image:
        loaded = load_rgb(image)
        sizes.append(loaded.size)
        return loaded

    def spy_window(
        image: Image.Image | None, data: bytes, scale: int, window: Window, *args, **kwargs
    ) -> bool:
        decoded = decode_window(image, data, scale, window, *args, **kwargs)
        if decoded:
            stored = image.size if image is not None else decode.plain_jpeg_size(data)
            assert stored is not None
            sizes.append(scaled_size(stored, scale))
        return decoded

    monkeypatch.setattr(decode, "load_rgb", spy)
    monkeypatch.setattr(decode, "decode_jpeg_window_resized", spy_window)
    return sizes


def test_same_seed_same_bytes_different_seeds_differ(tmp_path: pathlib.Path) -> None:
    path = write_image(tmp_path / "p.jpg", size=(80, 60))
    first = render(path, EVERYTHING, seed=42)
    again = render(path, EVERYTHING, seed=42)
    assert first.tobytes() == again.tobytes()
    others = {render(path, EVERYTHING, seed=seed).tobytes() for seed in range(8)}
    assert len(others) == 8


def test_the_rng_is_advanced_so_batches_use_one_generator(tmp_path: pathlib.Path) -> None:
    path = write_image(tmp_path / "p.png", size=(80, 60))
    rng = _rng(3)
    first = render(path, EVERYTHING, seed=rng)
    second = render(path, EVERYTHING, seed=rng)
    assert first.tobytes() != second.tobytes()


def test_no_augmentation_draws_no_random_numbers(tmp_path: pathlib.Path) -> None:
    path = write_image(tmp_path / "p.png")
    rng = _rng(5)
    render(path, {}, seed=rng)
    assert rng.random() == _rng(5).random()


@pytest.mark.parametrize(
    ("flip", "axis"), [("horizontal_flip", 1), ("vertical_flip", 0)], ids=["horizontal", "vertical"]
)
def test_flip_mirrors_the_unflipped_result_for_the_same_draws(
    tmp_path: pathlib.Path, flip: str, axis: int
) -> None:
    path = write_image(tmp_path / "p.jpg", size=(80, 60))
    base = {key: value for key, value in EVERYTHING.items() if not key.endswith("_flip")}
    flipped_seen = set()
    for seed in range(16):
        rng = _rng(seed)
        unflipped = render(path, base, seed=rng)
        flips = rng.random() < 0.5  # the next draw is the flip's
        result = render(path, {**base, flip: True}, seed=seed)
        expected = np.flip(unflipped, axis) if flips else unflipped
        assert np.array_equal(result, expected)
        flipped_seen.add(flips)
    assert flipped_seen == {True, False}


def test_horizontal_draw_comes_before_vertical(tmp_path: pathlib.Path) -> None:
    path = write_image(tmp_path / "p.png", size=(40, 30))
    plain = render(path)
    for seed in range(8):
        rng = _rng(seed)
        hflip, vflip = rng.random() < 0.5, rng.random() < 0.5
        out = render(path, {"horizontal_flip": True, "vertical_flip": True}, seed=seed)
        assert np.array_equal(out, plain[:: -1 if vflip else 1, :: -1 if hflip else 1])


def test_rotation_uses_the_drawn_angle(tmp_path: pathlib.Path) -> None:
    path = write_image(tmp_path / "p.png", size=(80, 60))
    plain = Image.fromarray(render(path))
    for seed in range(3):
        angle = _rng(seed).uniform(-45, 45)
        expected = plain.rotate(angle, Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
        out = render(path, {"rotate": 45}, seed=seed)
        assert np.array_equal(out, np.asarray(expected))
        assert not np.array_equal(out, np.asarray(plain))


def test_colour_changes_alter_the_picture(tmp_path: pathlib.Path) -> None:
    path = write_image(tmp_path / "p.png", size=(80, 60))
    plain = render(path)
    for key in ("brightness", "contrast", "saturation"):
        assert not np.array_equal(render(path, {key: 0.5}, seed=1), plain)


def test_brightness_factor_uses_the_drawn_value(tmp_path: pathlib.Path) -> None:
    path = write_image(tmp_path / "p.png", size=(80, 60))
    factor = _rng(9).uniform(0.5, 1.5)
    expected = np.asarray(
        Image.fromarray(render(path)).point(lambda v: min(255, int(v * factor + 0.5)))
    )
    out = render(path, {"brightness": 0.5}, seed=9)
    assert np.abs(out.astype(int) - expected).max() <= 1


@settings(max_examples=200, deadline=None)
@given(
    width=st.integers(1, 500),
    height=st.integers(1, 500),
    scale=st.tuples(st.floats(0.01, 1.0), st.floats(0.01, 1.0)).map(sorted),
    ratio=st.tuples(st.floats(0.2, 5.0), st.floats(0.2, 5.0)).map(sorted),
    seed=st.integers(0, 2**32),
)
def test_random_resized_crop_box_fits_and_respects_scale(
    width: int, height: int, scale: list[float], ratio: list[float], seed: int
) -> None:
    crop = CropSpec(scale=(scale[0], scale[1]), ratio=(ratio[0], ratio[1]))
    rng = _rng(seed)
    left, top, w, h = random_resized_crop((width, height), crop, rng)
    assert 0 < w <= width and 0 < h <= height
    assert 0 <= left <= width - w and 0 <= top <= height - h
    fallback = (left, top) == ((width - w) // 2, (height - h) // 2)
    if not fallback and width * height >= 400:
        fraction = w * h / (width * height)
        # w and h are rounded: allow one pixel of slack on each side
        slack = (w + h + 1) / (width * height)
        assert scale[0] - slack <= fraction <= scale[1] + slack


def test_random_resized_crop_scale_on_a_real_image(tmp_path: pathlib.Path) -> None:
    path = write_image(tmp_path / "p.png", size=(200, 200))
    crop = {"random_resized_crop": {"scale": [0.25, 0.25], "ratio": [1.0, 1.0]}}
    for seed in range(4):
        left, top, width, height = random_resized_crop(
            (200, 200), CropSpec(scale=(0.25, 0.25), ratio=(1.0, 1.0)), _rng(seed)
        )
        assert (width, height) == (100, 100)
        expected = reference_resize(path, (left, top, left + 100, top + 100))
        assert np.array_equal(render(path, crop, seed=seed), expected)


def test_random_resized_crop_falls_back_to_a_centre_crop() -> None:
    # an aspect ratio of 3 cannot fit a full-area crop of a square: centre crop, ratio clamped to 3
    crop = CropSpec(scale=(1.0, 1.0), ratio=(3.0, 3.0))
    assert random_resized_crop((300, 300), crop, _rng(0)) == (0, 100, 300, 100)
    crop = CropSpec(scale=(1.0, 1.0), ratio=(0.25, 0.25))
    assert random_resized_crop((300, 300), crop, _rng(0)) == (112, 0, 75, 300)


def test_random_resized_crop_draw_order() -> None:
    crop = CropSpec(scale=(0.5, 0.5), ratio=(1.0, 1.0))
    rng = _rng(11)
    rng.uniform(0.5, 0.5)
    rng.uniform(0.0, 0.0)
    top, left = int(rng.integers(0, 30)), int(rng.integers(0, 30))  # 100 - round(sqrt(5000)) + 1
    assert random_resized_crop((100, 100), crop, _rng(11)) == (left, top, 71, 71)


# ---------------------------------------------------------------------------------------- errors


def test_missing_file(tmp_path: pathlib.Path) -> None:
    error = bad_sample(tmp_path / "nope.jpg")
    assert error.kind == "missing"
    assert "nope.jpg" in str(error)


def test_text_file_is_a_decode_error(tmp_path: pathlib.Path) -> None:
    error = bad_sample(write_not_an_image(tmp_path / "notes.jpg"))
    assert error.kind == "decode"
    assert "b'this is not an i" in error.reason


def test_empty_file_is_a_decode_error(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert bad_sample(path).kind == "decode"


@pytest.mark.parametrize("augment", [None, {"random_resized_crop": True}])
def test_truncated_jpeg_is_a_decode_error(tmp_path: pathlib.Path, augment: dict | None) -> None:
    error = bad_sample(write_truncated_jpeg(tmp_path / "cut.jpg", size=(400, 300)), augment)
    assert error.kind == "decode"
    assert "truncated" in error.reason


def test_unreadable_file_is_a_permission_error(tmp_path: pathlib.Path) -> None:
    path = write_image(tmp_path / "secret.png")
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running with privileges that read any file (root)")
        assert bad_sample(path).kind == "permission"
    finally:
        path.chmod(0o644)


def test_permission_error_while_reading(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the same mapping, where root would bypass chmod
    def deny(path: object, flags: int, *args: object) -> int:
        raise PermissionError(13, "Permission denied", str(path))

    path = write_image(tmp_path / "secret.png")
    monkeypatch.setattr(os, "open", deny)
    error = bad_sample(path)
    assert error.kind == "permission"
    assert "Permission denied" in error.reason


def test_directory_is_unreadable(tmp_path: pathlib.Path) -> None:
    directory = tmp_path / "folder.jpg"
    directory.mkdir()
    assert bad_sample(directory).kind == "unreadable"


@pytest.mark.parametrize("limit", [5000, 9000], ids=["pillow-error", "pillow-warning"])
@pytest.mark.parametrize("warning_filter", ["ignore", "error"])
def test_decompression_bomb_is_too_large(
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    limit: int,
    warning_filter: WarningFilter,
) -> None:
    path = write_image(tmp_path / "bomb.png", size=(100, 100))  # 10 000 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with warnings.catch_warnings():
        warnings.simplefilter(warning_filter, Image.DecompressionBombWarning)
        error = bad_sample(path)
    assert error.kind == "too_large"
    assert "exceeds limit" in error.reason or "MAX_IMAGE_PIXELS" in error.reason


def _valid_files(directory: pathlib.Path) -> list[bytes]:
    suffixes = [".jpg", ".png", ".gif", ".webp", ".tif", ".bmp"]
    return [
        write_image(directory / f"v{suffix}", size=(20, 16)).read_bytes() for suffix in suffixes
    ]


@pytest.mark.parametrize("warning_filter", ["ignore", "error"])
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_corrupted_files_only_raise_bad_sample_errors(
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    warning_filter: WarningFilter,
    data: st.DataObject,
) -> None:
    originals = _valid_files(tmp_path)
    corrupted = bytearray(data.draw(st.sampled_from(originals)))
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(corrupted) - 1))
        corrupted[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(corrupted)))
    path = tmp_path / "fuzzed.img"
    path.write_bytes(bytes(corrupted[:cut]))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)  # keep corrupted headers cheap
    with warnings.catch_warnings():
        warnings.simplefilter(warning_filter)  # "error": Pillow's corrupt-data warnings raise
        try:
            out = render(path, {"random_resized_crop": True})
        except BadSampleError as error:
            assert error.kind in ("decode", "too_large")
        else:
            assert out.shape == (*SIZE, 3)


# ----------------------------------------------------------------------------------- arguments


def test_bad_out_buffer_is_a_config_error(tmp_path: pathlib.Path) -> None:
    path = write_image(tmp_path / "p.png")
    renderer = Renderer(image_size=SIZE, spec=TransformSpec())
    with pytest.raises(ConfigError, match=r"shape \(24, 32, 3\)"):
        renderer.render_into(path, _rng(0), np.zeros((32, 24, 3), np.uint8))
    with pytest.raises(ConfigError, match="float32"):
        renderer.render_into(path, _rng(0), np.zeros((*SIZE, 3), np.float32))


@pytest.mark.parametrize("size", [(0, 10), (10,), (10.0, 10), (True, 10), "224x224", None])
def test_bad_image_size_is_a_config_error(size: object) -> None:
    with pytest.raises(ConfigError, match="image_size must be"):
        Renderer(image_size=size, spec=TransformSpec())  # type: ignore[arg-type]


def test_renderer_reports_its_settings() -> None:
    spec = parse_augment({"horizontal_flip": True})
    renderer = Renderer(image_size=(5, 7), spec=spec)
    assert renderer.image_size == (5, 7)
    assert renderer.spec is spec


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)

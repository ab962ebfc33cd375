"""tf.data: read, decode (whole, or fused decode-and-crop), crop, resize, flip, uint8, batch.

``fused=False`` decodes the whole JPEG, then slices the crop out; ``fused=True`` reads the JPEG
header for its shape, draws the crop window, and decodes only that window
(``tf.image.decode_and_crop_jpeg``). ``antialias=True`` filters like Pillow's resampling;
``antialias=False`` is TF's default bilinear resize, which skips pixels when shrinking. TF decodes
JPEGs with libjpeg's fast integer IDCT by default (``dct_method=""``, the same bytes as
``"INTEGER_FAST"``), less accurate than the one Pillow and zerofeed use;
``accurate_idct=True`` asks for that one (``"INTEGER_ACCURATE"``).
"""

from __future__ import annotations

import functools
import time

import tensorflow as tf

from bench.config import BATCH_SIZE, CROP_RATIO, CROP_SCALE, IMAGE_SIZE, RunConfig
from bench.measure import timed_epochs
from bench.pipelines.fit import fit_epochs
from bench.pipelines.manifest import read_manifest

__all__ = ["build_dataset", "run_tfdata", "run_tfdata_fit"]

_WHOLE_IMAGE = tf.constant([[[0.0, 0.0, 1.0, 1.0]]])


def _crop_window(shape: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    begin, size, _ = tf.image.sample_distorted_bounding_box(
        shape,
        bounding_boxes=_WHOLE_IMAGE,
        area_range=CROP_SCALE,
        aspect_ratio_range=CROP_RATIO,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    return begin, size


def _decode_then_crop(path: tf.Tensor, dct_method: str = "") -> tf.Tensor:
    image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3, dct_method=dct_method)
    begin, size = _crop_window(tf.shape(image))
    return tf.slice(image, begin, size)


def _decode_and_crop(path: tf.Tensor, dct_method: str = "") -> tf.Tensor:
    data = tf.io.read_file(path)
    begin, size = _crop_window(tf.image.extract_jpeg_shape(data))
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    return tf.image.decode_and_crop_jpeg(data, window, channels=3, dct_method=dct_method)


_SCALES = (1, 2, 4, 8)  # libjpeg's scale-downs, as decode_and_crop_jpeg's ratio


def _decode_and_crop_scaled(path: tf.Tensor, dct_method: str = "") -> tf.Tensor:
    """The crop window decoded at the largest scale-down that keeps it at least IMAGE_SIZE (what
    zerofeed's producers do): ``ratio`` is an attribute, so one branch per scale."""
    data = tf.io.read_file(path)
    begin, size = _crop_window(tf.image.extract_jpeg_shape(data))
    room = tf.minimum(size[0] // IMAGE_SIZE[0], size[1] // IMAGE_SIZE[1])
    branch = tf.reduce_sum(tf.cast(tf.constant(_SCALES[1:]) <= room, tf.int32))

    def decode(scale: int):
        def run() -> tf.Tensor:
            window = tf.stack([begin[0], begin[1], size[0], size[1]]) // scale
            return tf.image.decode_and_crop_jpeg(
                data, window, channels=3, ratio=scale, dct_method=dct_method
            )

        return run

    return tf.switch_case(branch, [decode(scale) for scale in _SCALES])


def _any_format(crop, path: tf.Tensor) -> tf.Tensor:
    """``crop`` for JPEGs, a whole decode and a slice for other formats (the mixed set's PNGs)."""
    data = tf.io.read_file(path)

    def other() -> tf.Tensor:
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        begin, size = _crop_window(tf.shape(image))
        return tf.slice(image, begin, size)

    return tf.cond(tf.io.is_jpeg(data), lambda: crop(path), other)


def build_dataset(
    cfg: RunConfig,
    *,
    fused: bool,
    antialias: bool,
    scaled: bool = False,
    accurate_idct: bool = False,
) -> tf.data.Dataset:
    """The pipeline: ``(uint8 [64, 224, 224, 3], int32 [64])`` batches. A data set with files
    other than JPEGs (the mixed set) has them decoded whole by ``tf.io.decode_image``."""
    paths, labels = read_manifest(cfg.manifest_path)
    decode = _decode_and_crop_scaled if scaled else _decode_and_crop if fused else _decode_then_crop
    crop = functools.partial(decode, dct_method="INTEGER_ACCURATE" if accurate_idct else "")
    if any(not p.lower().endswith((".jpg", ".jpeg")) for p in paths):
        crop = functools.partial(_any_format, crop)

    def load(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.image.resize(crop(path), IMAGE_SIZE, antialias=antialias)
        image = tf.image.random_flip_left_right(image)
        return tf.saturate_cast(tf.round(image), tf.uint8), label

    return (
        tf.data.Dataset.from_tensor_slices((paths, labels))
        .map(load, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(BATCH_SIZE)
        .prefetch(tf.data.AUTOTUNE)
    )


def run_tfdata(
    cfg: RunConfig,
    *,
    fused: bool,
    antialias: bool,
    scaled: bool = False,
    accurate_idct: bool = False,
) -> dict[str, object]:
    """Iterate the dataset (a new iterator each epoch) and time it."""
    dataset = build_dataset(
        cfg, fused=fused, antialias=antialias, scaled=scaled, accurate_idct=accurate_idct
    )

    def epoch() -> tuple[int, int, float]:
        images = batches = 0
        last = 0.0
        for x, _ in dataset:
            images += int(x.shape[0])
            batches += 1
            last = time.perf_counter()
        return images, batches, last

    return timed_epochs(epoch, warmup=cfg.warmup, runs=cfg.runs).summary()


def run_tfdata_fit(cfg: RunConfig, *, fused: bool, antialias: bool) -> dict[str, object]:
    """``model.fit(dataset)`` of the trivial model, the same model as the ``zerofeed_fit`` row."""
    paths, _ = read_manifest(cfg.manifest_path)
    dataset = build_dataset(cfg, fused=fused, antialias=antialias)
    return fit_epochs(dataset, images=len(paths), warmup=cfg.warmup, runs=cfg.runs)

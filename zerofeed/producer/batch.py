"""Turn one ``TASK`` into one ``RESULT``: every image written straight into one batch buffer.

No sample can end a worker: every failure of one sample (a file or object that cannot be read, a
path no file can have, an image that does not decode, a plugin that raises, and any other exception) is
that sample's bad-sample report, its reason cut to :data:`~zerofeed.common.protocol.MAX_REASON_CHARS`
(:func:`~zerofeed.common.protocol.brief`), and the worker goes on with the next one. A sample
that takes longer than ``sample_timeout`` (a hung decoder, a stalled network file system, a FIFO
where a file should be) is cut off with ``SIGALRM`` and reported with kind ``"timeout"``.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import FrameType
from typing import Any

import msgpack
import numpy as np

from zerofeed.common.errors import BadSampleError, ConfigError
from zerofeed.common.plan import sample_rng
from zerofeed.common.protocol import Result, Skipped, Task, brief
from zerofeed.common.transforms import TransformSpec
from zerofeed.producer.crashes import Breadcrumb
from zerofeed.producer.plugins import CustomTransform
from zerofeed.producer.reader import SampleReader
from zerofeed.producer.render import Renderer

__all__ = ["BatchMaker"]

log = logging.getLogger("zerofeed.producer")

_MAX_RENDERERS = 8


class BatchMaker:
    """Makes batches for tasks; keeps a renderer per (image size, augment spec) it has seen."""

    def __init__(
        self,
        *,
        reader: SampleReader,
        transforms: Mapping[str, CustomTransform],
        sample_timeout: float | None = None,
        breadcrumb: Breadcrumb | None = None,
        crashed: Mapping[str, str] | None = None,
    ) -> None:
        """``breadcrumb`` notes each sample while it is made; ``crashed`` are samples that ended
        a worker process before, with how (reported as bad samples of kind ``"crash"``, unread):
        see :mod:`zerofeed.producer.crashes`."""
        self._breadcrumb = breadcrumb
        self._crashed = dict(crashed or {})
        self._reader = reader
        self._transforms = transforms
        self._sample_timeout = sample_timeout
        self._renderers: dict[bytes, Renderer] = {}
        self.stage_seconds: dict[str, float] = {}  # read, decode, augment: summed over samples
        self.images_made = 0
        self.batches_made = 0

    def make(self, task: Task, out: np.ndarray | None = None) -> Result:
        """The result of ``task``; bad samples are listed as skipped, never raised.

        With ``out`` (a buffer of at least the task's images, in its dtype: a shared-memory slot)
        the images are written there and the result names ``task.slot`` instead of carrying them.
        """
        try:
            renderer = self._renderer(task)
        except ConfigError as exc:
            skipped = tuple(
                Skipped(index=row, kind="config", reason=brief(str(exc))) for row, _ in task.samples
            )
            return Result(task_id=task.task_id, count=0, skipped=skipped)
        height, width = task.image_size
        shape = (len(task.samples), height, width, 3)
        images = out if out is not None and task.dtype == "uint8" else np.empty(shape, np.uint8)
        skipped_list: list[Skipped] = []
        count = 0
        with _Deadline(self._sample_timeout) as deadline:
            for row, path in task.samples:
                crashed = self._crashed.get(path)
                if crashed is not None:
                    skipped_list.append(Skipped(index=row, kind="crash", reason=brief(crashed)))
                    continue
                if self._breadcrumb is not None:
                    self._breadcrumb.begin(path)
                try:
                    rng = sample_rng(task.seed, task.epoch, row)
                    with deadline.sample():
                        started = time.perf_counter()
                        data = self._reader.read(path)
                        self._count_read(time.perf_counter() - started)
                        renderer.render_bytes(path, data, rng, images[count])
                    count += 1
                except BadSampleError as exc:
                    skipped_list.append(Skipped(index=row, kind=exc.kind, reason=brief(exc.reason)))
                except Exception as exc:  # not foreseen: still this sample's failure alone
                    log.warning("unexpected failure on sample %d (%r)", row, path, exc_info=True)
                    reason = f"unexpected {type(exc).__name__}: {exc}"
                    skipped_list.append(Skipped(index=row, kind="error", reason=brief(reason)))
                except _SampleTimeout:
                    reason = (
                        f"took longer than {self._sample_timeout:g} s (a hung decoder or stalled "
                        "storage); raise --sample-timeout if such files are legitimately slow"
                    )
                    skipped_list.append(Skipped(index=row, kind="timeout", reason=reason))
                finally:
                    if self._breadcrumb is not None:
                        self._breadcrumb.end()
        self.images_made += count
        self.batches_made += 1
        if out is not None:
            if images is not out:
                _as_dtype(images[:count], task.dtype, out=out[:count])
            return Result(
                task_id=task.task_id, count=count, skipped=tuple(skipped_list), slot=task.slot
            )
        return Result(
            task_id=task.task_id,
            count=count,
            skipped=tuple(skipped_list),
            images=_as_dtype(images[:count], task.dtype),
        )

    def _count_read(self, seconds: float) -> None:
        self.stage_seconds["read"] = self.stage_seconds.get("read", 0.0) + seconds

    def _renderer(self, task: Task) -> Renderer:
        key = msgpack.packb([task.image_size, task.augment])
        renderer = self._renderers.get(key)
        if renderer is None:
            if len(self._renderers) >= _MAX_RENDERERS:
                self._renderers.clear()
            spec = TransformSpec.from_wire(task.augment)
            renderer = Renderer(
                image_size=task.image_size,
                spec=spec,
                transforms=self._transforms,
                stage_seconds=self.stage_seconds,
            )
            self._renderers[key] = renderer
        return renderer


def _as_dtype(images: np.ndarray, dtype: str, out: np.ndarray | None = None) -> np.ndarray:
    if dtype == "uint8":
        return images
    scaled = np.empty(images.shape, dtype=np.float32) if out is None else out
    np.multiply(images, np.float32(1 / 255), out=scaled, dtype=np.float32)
    return scaled


class _SampleTimeout(BaseException):
    """Raised by SIGALRM inside a sample that ran out of time (not an Exception: nothing inside
    the renderer may swallow it)."""


class _Deadline:
    """``with _Deadline(seconds) as deadline:`` installs a SIGALRM handler for a batch; each
    ``with deadline.sample():`` then cuts its sample off after ``seconds``. Off the main thread
    (signals cannot be handled there), or with ``seconds`` 0 or None, nothing is cut off."""

    def __init__(self, seconds: float | None) -> None:
        main = threading.current_thread() is threading.main_thread()
        self._seconds = float(seconds) if seconds and main else 0.0
        self._previous: Any = None

    def __enter__(self) -> _Deadline:
        if self._seconds:
            self._previous = signal.signal(signal.SIGALRM, _expire)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._seconds:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous)

    @contextmanager
    def sample(self) -> Iterator[None]:
        if not self._seconds:
            yield
            return
        signal.setitimer(signal.ITIMER_REAL, self._seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)


def _expire(_signum: int, _frame: FrameType | None) -> None:
    raise _SampleTimeout

"""What the feed costs the *training* process per batch under ``model.fit`` (issue 11, item 5).

    .venv/bin/python bench/fit_cost.py                   # every case, 2 rounds, ~4 min on 2 cores
    .venv/bin/python bench/fit_cost.py --cases model feed_fit feed_tensor --rounds 3

Every case runs ``--warmup`` + ``--epochs`` epochs of the benchmark's trivial model (uint8 input,
``Rescaling``, ``GlobalAveragePooling2D``, ``Dense(10)``, SGD; ``bench/pipelines/fit.py``) in a
fresh subprocess, batches of 64 x 224 x 224 x 3 uint8, ``len(seq)`` steps an epoch. A callback
reads the process's own CPU time (``getrusage(RUSAGE_SELF)``: every thread of the trainer, no
child process, so zerofeed's producers are not counted) and its page faults at each epoch's
begin and end; the figures are per batch over the timed epochs. Cases run in turn, round after
round (A B C, A B C), so that a machine whose speed drifts weighs on all alike; the table gives
the median of all timed epochs and the spread (min-max).

``minus model`` is a case's CPU per batch minus the ``model`` case's (the same model on one
cached batch, run flat out). A trainer fed at ~1,000 img/s idles ~55 ms between steps, and a step
after an idle spell costs the host more CPU (cold caches, a clocked-down core, TensorFlow's
threads woken again): ``model_paced`` is the same model held to ``--pace-ms`` per step, the
baseline ``./dev bench``'s trainer-cost target (<= 2 ms) uses. ``pyds_paced`` and
``numpy_function_paced`` time the two ways into ``fit`` alone (Keras' ``PyDataset`` bridge, and
the ``tf.numpy_function`` one ``as_tf_dataset`` uses) on cached batches at the same pace.
``threads`` lists where the CPU went by thread (``/proc/self/task``), e.g. ``main``,
``tf_data_private_threadpool``, zerofeed's I/O thread.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BATCH = 64
SHAPE = (224, 224, 3)
ROTATE = 16  # distinct cached batches of the "rotate" cases: 154 MB, more than any L3 cache


@dataclass(frozen=True)
class Case:
    key: str
    what: str
    kind: str = "fit"  # or "loop"


CASES: tuple[Case, ...] = (
    Case("model", "(a) model alone: tf.data from_tensors(one batch).repeat(steps)"),
    Case("model_paced", "(a'') model alone, each step held to --pace-ms (idle between steps)"),
    Case("model_rotate", "(a') model alone, 16 distinct batches cycled (tf.data, beyond L3)"),
    Case("feed_fit", "(b) FeedSequence through fit (local_producers, shared_memory=True)"),
    Case("feed_tfdata", "(b') FeedSequence.as_tf_dataset() through fit (tf.numpy_function)"),
    Case("feed_loop", "(c) FeedSequence, seq[i] loop (no model)", "loop"),
    Case("feed_loop_touch", "(c') seq[i] loop, reading every byte of x (np.sum)", "loop"),
    Case("pyds_paced", "(d2) PyDataset cycling 16 cached batches, held to --pace-ms"),
    Case("numpy_function_paced", "(d3) tf.numpy_function over 16 cached batches, paced"),
    Case("pyds_same", "(d) PyDataset returning one preallocated numpy batch"),
    Case("pyds_rotate", "(d') PyDataset cycling 16 preallocated numpy batches"),
    Case("pyds_fresh", "(e) PyDataset returning a fresh np.empty batch each time"),
    Case("feed_socket", "(f) FeedSequence through fit, shared_memory=False"),
    Case("feed_tensor", "(x1) FeedSequence subclass: __getitem__ returns tf.Tensor x"),
    Case("pyds_tensor", "(x1') PyDataset cycling 16 batches, returned as tf.Tensor"),
    Case("feed_adapter", "(x2) FeedSequence as its own DataAdapter: lean tf.data pipeline"),
    Case("feed_train_on_batch", "(x3) seq[i] loop + model.train_on_batch", "loop"),
)
_BY_KEY = {case.key: case for case in CASES}
DEFAULT_CASES = [c.key for c in CASES]


# -- measuring --------------------------------------------------------------------------------


def _usage() -> dict[str, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "cpu": r.ru_utime + r.ru_stime,
        "sys": r.ru_stime,
        "minflt": float(r.ru_minflt),
        "majflt": float(r.ru_majflt),
        "wall": time.perf_counter(),
        "nvcsw": float(r.ru_nvcsw),
        "nivcsw": float(r.ru_nivcsw),
    }


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of every live thread of this process, by name (Python's names where known)."""
    tick = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
            comm = (task / "comm").read_text().strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / tick
        name = names.get(int(task.name), comm)
        if name == "MainThread":
            name = "main"
        name = name.rstrip("0123456789-_ ") or name
        out[name] = out.get(name, 0.0) + seconds
    return out


class Meter:
    """Usage at every epoch's begin and end; per-thread CPU over the timed epochs."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.epochs: list[dict[str, float]] = []
        self._begin: dict[str, float] = {}
        self._threads: dict[str, float] = {}
        self.threads: dict[str, float] = {}
        self._epoch = 0

    def begin(self) -> None:
        if self._epoch == self.warmup:
            self._threads = _thread_cpu()
        self._begin = _usage()

    def end(self, batches: int) -> None:
        now = _usage()
        if self._epoch >= self.warmup:
            delta = {k: now[k] - self._begin[k] for k in now}
            self.epochs.append({**delta, "batches": batches})
            threads = _thread_cpu()
            self.threads = {
                k: v - self._threads.get(k, 0.0)
                for k, v in threads.items()
                if v - self._threads.get(k, 0.0) > 0
            }
        self._epoch += 1


# -- the cases (run in the child) -------------------------------------------------------------


def _batch(seed: int = 0) -> tuple[Any, Any]:
    """A random batch, 64-byte aligned as the feed's shared-memory slots are: TensorFlow wraps
    such memory without a copy (numpy's own large arrays are 16-byte aligned, and copied)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    size = BATCH * int(np.prod(SHAPE))
    raw = np.empty(size + 64, np.uint8)
    start = -raw.ctypes.data % 64
    x = raw[start : start + size].reshape((BATCH, *SHAPE))
    x[...] = rng.integers(0, 256, x.shape, dtype=np.uint8)
    return x, rng.integers(0, 10, BATCH).astype(np.int64)


def _numpy_function_dataset(batches: list[tuple[Any, Any]], steps: int) -> Any:
    """The bridge ``as_tf_dataset`` uses, over cached batches: ``tf.numpy_function`` per index."""
    import tensorflow as tf

    @tf.autograph.experimental.do_not_convert
    def load(index: Any) -> Any:
        x, y = tf.numpy_function(
            lambda i: batches[int(i) % len(batches)], [index], (tf.uint8, tf.int64)
        )
        x.set_shape((None, *SHAPE))
        y.set_shape((None,))
        return x, y

    return tf.data.Dataset.range(steps).map(load)


def _pydataset(batches: list[tuple[Any, Any]], steps: int, *, fresh: bool = False, tensor=False):
    import keras
    import numpy as np

    class Cached(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=1, use_multiprocessing=False)
            self.tensors = None
            if tensor:
                import tensorflow as tf

                self.tensors = [(tf.constant(x), tf.constant(y)) for x, y in batches]

        def __len__(self) -> int:
            return steps

        def __getitem__(self, index: int):
            if fresh:
                return np.empty((BATCH, *SHAPE), np.uint8), batches[0][1]
            if self.tensors is not None:
                return self.tensors[index % len(self.tensors)]
            return batches[index % len(batches)]

    return Cached()


def _feed(args: argparse.Namespace, **kwargs: Any):
    from bench.config import AUGMENT
    from zerofeed.consumer import FeedSequence

    cls = kwargs.pop("cls", FeedSequence)
    return cls(
        args.manifest,
        batch_size=BATCH,
        image_size=SHAPE[:2],
        augment=AUGMENT,
        local_producers=args.producers,
        seed=0,
        **kwargs,
    )


def _tensor_feed_class():
    """x1: the same feed, ``x`` handed to Keras as an (aliasing) tf.Tensor."""
    import tensorflow as tf

    from zerofeed.consumer import FeedSequence

    class TensorFeed(FeedSequence):
        def __getitem__(self, index: int):  # type: ignore[override]
            x, *rest = super().__getitem__(index)
            return (tf.convert_to_tensor(x), *rest)

    return TensorFeed


def _adapter_feed_class():
    """x2: the feed is also a Keras DataAdapter (``get_data_adapter`` returns it as it is), so
    its tf.data pipeline is its own: one ``from_generator`` without Keras' per-batch checks."""
    import tensorflow as tf
    from keras.src.trainers.data_adapters.data_adapter import DataAdapter

    from zerofeed.consumer import FeedSequence

    class AdapterFeed(FeedSequence, DataAdapter):
        def _in_order(self):
            for i in range(len(self)):
                x, y = FeedSequence.__getitem__(self, i)
                yield x, y

        def get_tf_dataset(self):
            h, w = self.image_size
            sig = (
                tf.TensorSpec((None, h, w, 3), tf.uint8),
                tf.TensorSpec((None,), tf.int64),
            )
            return tf.data.Dataset.from_generator(self._in_order, output_signature=sig)

        def get_numpy_iterator(self):
            return (FeedSequence.__getitem__(self, i) for i in range(len(self)))

        @property
        def num_batches(self):
            return len(self)

        @property
        def batch_size(self):
            return self.__dict__.get("_bs")

        @batch_size.setter
        def batch_size(self, value):
            self.__dict__["_bs"] = value

        @property
        def has_partial_batch(self):
            return None

        @property
        def partial_batch_size(self):
            return None

        def on_epoch_begin(self) -> None:
            FeedSequence.on_epoch_begin(self)

        def on_epoch_end(self) -> None:
            FeedSequence.on_epoch_end(self)

    return AdapterFeed


def _fit_data(case: str, args: argparse.Namespace, steps: int):
    """What ``fit`` gets, and what to close afterwards."""
    import tensorflow as tf

    if case in ("model", "model_paced"):  # model_paced: the same data, paced by a callback
        x, y = _batch()
        return tf.data.Dataset.from_tensors((x, y)).repeat(steps), None
    if case == "model_rotate":
        import numpy as np

        xs, ys = zip(*(_batch(k) for k in range(ROTATE)), strict=True)
        big = tf.constant(np.stack(xs))
        labels = tf.constant(np.stack(ys))
        ds = tf.data.Dataset.range(steps).map(
            lambda i: (tf.gather(big, i % ROTATE), tf.gather(labels, i % ROTATE))
        )
        return ds.prefetch(2), None
    if case == "pyds_same":
        return _pydataset([_batch()], steps), None
    if case in ("pyds_rotate", "pyds_paced"):
        return _pydataset([_batch(k) for k in range(ROTATE)], steps), None
    if case == "numpy_function_paced":
        return _numpy_function_dataset([_batch(k) for k in range(ROTATE)], steps), None
    if case == "pyds_tensor":
        return _pydataset([_batch(k) for k in range(ROTATE)], steps, tensor=True), None
    if case == "pyds_fresh":
        return _pydataset([_batch()], steps, fresh=True), None
    if case == "feed_fit":
        seq = _feed(args)
    elif case == "feed_tfdata":
        seq = _feed(args)
        return seq.as_tf_dataset(), seq
    elif case == "feed_socket":
        seq = _feed(args, shared_memory=False)
    elif case == "feed_tensor":
        seq = _feed(args, cls=_tensor_feed_class())
    elif case == "feed_adapter":
        seq = _feed(args, cls=_adapter_feed_class())
    else:
        raise SystemExit(f"unknown fit case {case}")
    return seq, seq


def _steps(args: argparse.Namespace) -> int:
    return -(-args.images // BATCH)


def run_case(case: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one case in this process; its measurements."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from bench.pipelines.fit import Pacer, trivial_model

    meter = Meter(args.warmup)
    epochs = args.warmup + args.epochs
    steps = _steps(args)
    model = trivial_model()
    if _BY_KEY[case].kind == "fit":
        data, closing = _fit_data(case, args, steps)

        class Callback(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.batches = 0

            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self.batches = 0
                meter.begin()

            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                self.batches += 1

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                meter.end(self.batches)

        try:
            callbacks: list[keras.callbacks.Callback] = [Callback()]
            if case.endswith("_paced"):
                callbacks.insert(0, Pacer(args.pace_ms / 1000))
            model.fit(data, epochs=epochs, verbose=0, callbacks=callbacks)
        finally:
            if closing is not None:
                closing.close()
    else:
        import numpy as np

        seq = _feed(args)
        try:
            for _ in range(epochs):
                meter.begin()
                for i in range(len(seq)):
                    x, y = seq[i]
                    if case == "feed_loop_touch":
                        np.sum(x, dtype=np.uint64)
                    elif case == "feed_train_on_batch":
                        model.train_on_batch(x, y)
                seq.on_epoch_end()
                meter.end(len(seq))
        finally:
            seq.close()
    return {"case": case, "epochs": meter.epochs, "threads": meter.threads}


# -- the parent: run every case in turn, in fresh processes, and tabulate ---------------------


def _per_batch(epochs: list[dict[str, float]], key: str, scale: float = 1.0) -> list[float]:
    return [scale * e[key] / e["batches"] for e in epochs]


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    epochs = [e for r in results for e in r["epochs"]]
    cpu = _per_batch(epochs, "cpu", 1000)
    threads: dict[str, float] = {}
    batches = sum(e["batches"] for e in epochs)
    for r in results:
        for name, seconds in r["threads"].items():
            threads[name] = threads.get(name, 0.0) + seconds
    rate = [e["batches"] * BATCH / e["wall"] for e in epochs]
    return {
        "cpu_ms": statistics.median(cpu),
        "cpu_min": min(cpu),
        "cpu_max": max(cpu),
        "sys_ms": statistics.median(_per_batch(epochs, "sys", 1000)),
        "minflt": statistics.median(_per_batch(epochs, "minflt")),
        "csw": statistics.median(_per_batch(epochs, "nvcsw")),
        "images_per_s": statistics.median(rate),
        "threads_ms": {
            k: 1000 * v / batches
            for k, v in sorted(threads.items(), key=lambda kv: -kv[1])
            if 1000 * v / batches >= 0.05
        },
        "epochs": len(epochs),
    }


def _table(summaries: dict[str, dict[str, Any]]) -> str:
    base = summaries.get("model", {}).get("cpu_ms")
    lines = [
        "| case | CPU ms/batch (min-max) | minus model | sys ms | minflt/batch | vol. csw/batch "
        "| images/s | CPU by thread, ms/batch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, s in summaries.items():
        minus = f"{s['cpu_ms'] - base:+.2f}" if base is not None else "n/a"
        threads = ", ".join(f"{k} {v:.2f}" for k, v in s["threads_ms"].items())
        lines.append(
            f"| `{key}` {_BY_KEY[key].what} | {s['cpu_ms']:.2f} ({s['cpu_min']:.2f}-"
            f"{s['cpu_max']:.2f}) | {minus} | {s['sys_ms']:.2f} | {s['minflt']:.0f} | "
            f"{s['csw']:.1f} | {s['images_per_s']:.0f} | {threads} |"
        )
    return "\n".join(lines)


def _child(case: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", case]
    command += ["--manifest", str(args.manifest), "--images", str(args.images)]
    command += ["--epochs", str(args.epochs), "--warmup", str(args.warmup)]
    command += ["--producers", str(args.producers), "--pace-ms", str(args.pace_ms)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=args.timeout, check=False
    )
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"case {case} failed (rc {done.returncode}):\n{done.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="cases:\n" + "\n".join(f"  {c.key:20} {c.what}" for c in CASES),
    )
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES, choices=DEFAULT_CASES)
    parser.add_argument("--images", type=int, default=640, help="data set size (default 640)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per case and round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed epochs first")
    parser.add_argument("--rounds", type=int, default=2, help="every case runs this many times")
    parser.add_argument("--producers", type=int, default=2, help="local producers (default 2)")
    parser.add_argument("--pace-ms", type=float, default=55.0, help="model_paced's idle time")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per case run")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--manifest", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(run_case(args.child, args)))
        return 0
    if args.manifest is None:
        from bench.dataset import ensure_dataset

        args.manifest = ensure_dataset(args.images).manifest
    results: dict[str, list[dict[str, Any]]] = {key: [] for key in args.cases}
    for round_ in range(args.rounds):
        for key in args.cases:
            started = time.perf_counter()
            results[key].append(_child(key, args))
            s = _summary(results[key][-1:])
            print(
                f"round {round_ + 1}/{args.rounds} {key:20} {s['cpu_ms']:6.2f} ms/batch "
                f"({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
            )
    summaries = {key: _summary(runs) for key, runs in results.items()}
    print(
        f"\n{_steps(args)} batches of {BATCH}x{'x'.join(map(str, SHAPE))} uint8 an epoch, "
        f"{args.epochs} timed epochs x {args.rounds} rounds per case, "
        f"{args.producers} local producers\n"
    )
    print(_table(summaries))
    if args.json:
        args.json.write_text(json.dumps({"summaries": summaries, "runs": results}, indent=1))
    return 0


Callback = Callable[..., None]

if __name__ == "__main__":
    sys.exit(main())

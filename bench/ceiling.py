"""Consumer ceiling: how many ready batches one feed absorbs from remote producers over TCP.

    .venv/bin/python -m bench.ceiling                     # ~1 min on 2 cores
    .venv/bin/python -m bench.ceiling --producers 1 8 --batches 600

No image is decoded: each synthetic producer (a process of its own, ``--synthetic-producer``)
speaks zerofeed's protocol (HELLO, WELCOME, TASK, RESULT, heartbeats; ``docs/protocol.md``) over
TCP on loopback and answers every task with a ready 64x224x224x3 uint8 batch (one buffer made at
start, sent zero-copy), so what is measured is the consumer alone: libzmq's receive, the
dispatcher, the scheduler and ``Feed.get`` handing the batch to the caller. The consumer is a
``Feed`` with ``local_producers=0`` bound to a TCP port, read with ``feed.get(epoch, batch)`` in
plan order for a warm-up epoch and then ``--epochs`` timed ones.

Reported per producer count: images/s over the timed epochs, and the consumer process's CPU
time (all its threads, libzmq's I/O thread included) per batch. The producers run on the same
cores, so on a small machine their sends compete with the consumer's receives; their CPU per
batch is reported too. Results: ``bench/results/ceiling.md`` and ``ceiling.json``.

The plain-socket rows are the floor under any consumer over TCP: sender processes write the same
batch bytes down plain sockets and the reader reads each into one preallocated, pre-faulted buffer
(no libzmq, no protocol, no allocation, no page faults), once woken at every arrival as libzmq is,
once with ``SO_RCVLOWAT`` kept at 1 MiB: their CPU per batch is the kernel's receive path, its
copy out of the socket and the reader's wake-ups.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import zmq

from bench.config import BATCH_SIZE, IMAGE_SIZE, machine_cores
from bench.scale import free_port
from zerofeed.common.protocol import (
    Heartbeat,
    Hello,
    Result,
    Task,
    Unknown,
    Welcome,
    decode,
    encode,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
_LOW_WATER = 1 << 20  # bytes: the floor rows' reader is woken once a MiB
_FLOOR_ROWS: list[tuple[str, dict[str, int]]] = [
    ("TCP socket alone, woken at every arrival (as libzmq reads)", {}),
    ("TCP socket alone, woken once a MiB (SO_RCVLOWAT)", {"low_water": _LOW_WATER}),
    (
        "4 TCP sockets alone, woken once a MiB (SO_RCVLOWAT)",
        {"connections": 4, "low_water": _LOW_WATER},
    ),
]
_CREDITS = 4  # tasks each synthetic producer holds, as a producer worker's default prefetch x 2


def ready_batch() -> memoryview:
    """One batch's bytes (BATCH_SIZE x IMAGE_SIZE x 3, uint8), made once and sent as they are."""
    height, width = IMAGE_SIZE
    size = BATCH_SIZE * height * width * 3
    return memoryview(bytes(range(256)) * (size // 256 + 1))[:size]


def synthetic_producer(endpoint: str, name: str) -> None:
    """Answer every task from ``endpoint`` with a ready batch until the consumer goes quiet (for
    four heartbeat intervals: it has closed); print this process's CPU seconds and the batches it
    sent."""
    height, width = IMAGE_SIZE
    ready = ready_batch()
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.linger = 0
    socket.connect(endpoint)
    socket.send_multipart(encode(Hello(producer=name, credits=_CREDITS)))
    sent, heartbeat_interval, last_sent, last_heard = 0, 1.0, time.monotonic(), time.monotonic()
    quiet_limit = 30.0  # until welcomed
    try:
        while time.monotonic() - last_heard < quiet_limit:
            if not socket.poll(round(heartbeat_interval * 250)):
                if time.monotonic() - last_sent >= heartbeat_interval:
                    socket.send_multipart(encode(Heartbeat()))
                    last_sent = time.monotonic()
                continue
            message = decode(socket.recv_multipart())
            last_heard = time.monotonic()
            if isinstance(message, Welcome):
                heartbeat_interval = message.heartbeat_interval
                quiet_limit = 4 * heartbeat_interval
            elif isinstance(message, Task):
                count = len(message.samples)
                images = ready[: count * height * width * 3]
                result = Result(task_id=message.task_id, count=count, images=images)
                socket.send_multipart(encode(result), copy=False)
                sent += 1
                last_sent = time.monotonic()
            elif isinstance(message, Unknown):
                socket.send_multipart(encode(Hello(producer=name, credits=_CREDITS)))
    finally:
        socket.close()
        context.term()
        print_sender_report(sent)


def socket_sender(port: str, count: str) -> None:
    """Write ``count`` batches' bytes down a plain TCP socket to ``port``; print this process's
    CPU seconds."""
    ready = ready_batch()
    with socket.create_connection(("127.0.0.1", int(port))) as connection:
        for _ in range(int(count)):
            connection.sendall(ready)
    print_sender_report(int(count))


def print_sender_report(sent: int) -> None:
    """A sender process's last line, which the row reads: its CPU seconds and batches sent."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"cpu_s": usage.ru_utime + usage.ru_stime, "sent": sent}), flush=True)


def run_socket_floor(
    batches: int, epochs: int, *, connections: int = 1, low_water: int = 0
) -> dict[str, Any]:
    """The kernel's share: ``connections`` plain TCP sockets from as many sender processes, read
    non-blocking as they become readable, each into one reused, pre-faulted buffer; a warm-up
    epoch and ``epochs`` timed ones.

    With ``low_water`` (bytes), each socket's ``SO_RCVLOWAT`` is kept at the smaller of that and
    what its batch still lacks, so the reader is woken once per ``low_water`` bytes instead of at
    every arrival, and never waits for bytes that are not coming.
    """
    height, width = IMAGE_SIZE
    size = BATCH_SIZE * height * width * 3
    total = batches * (epochs + 1)
    counts = [total // connections + (i < total % connections) for i in range(connections)]
    with socket.create_server(("127.0.0.1", 0), backlog=connections) as listener:
        port = listener.getsockname()[1]
        senders = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.ceiling", "--socket-sender", str(port), str(count)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for count in counts
        ]
        readers: list[_FloorReader] = []
        try:
            readers += [_FloorReader(listener.accept()[0], size, low_water) for _ in counts]
            with selectors.DefaultSelector() as selector:
                for reader in readers:
                    selector.register(reader.connection, selectors.EVENT_READ, reader)

                def receive_until(completed: int) -> int:
                    checksum = 0
                    while sum(reader.completed for reader in readers) < completed:
                        for key, _ in selector.select():
                            checksum += key.data.read()
                            if key.data.closed:
                                selector.unregister(key.fileobj)
                    return checksum

                checksum = receive_until(batches)  # the warm-up epoch
                wall, cpu, threads = time.perf_counter(), time.process_time(), thread_cpu()
                checksum += receive_until(total)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                threads = {
                    name: seconds - threads.get(name, 0.0) for name, seconds in thread_cpu().items()
                }
        finally:
            for reader in readers:
                reader.connection.close()
            reports = [
                json.loads(s.communicate(timeout=60)[0].strip().splitlines()[-1]) for s in senders
            ]
    if checksum == 0:
        raise RuntimeError("the batches arrived empty")
    return {
        **_figures(total - batches, wall, cpu, threads),
        "producer_cpu_ms_per_batch": 1000
        * sum(r["cpu_s"] for r in reports)
        / sum(r["sent"] for r in reports),
    }


class _FloorReader:
    """One socket of the floor rows: reads batches of ``size`` bytes into one reused buffer."""

    def __init__(self, connection: socket.socket, size: int, low_water: int) -> None:
        connection.setblocking(False)
        self.connection = connection
        self.completed = 0
        self.closed = False
        self._buffer = bytearray(size)  # zero-filled: every page touched
        self._view = memoryview(self._buffer)
        self._received = 0
        self._low_water = low_water
        self._mark = 1
        self._set_mark()

    def read(self) -> int:
        """Read what is there; return the sum of the last byte of each batch completed."""
        checksum = 0
        while True:
            wanted = len(self._buffer) - self._received
            try:
                got = self.connection.recv_into(self._view[self._received :])
            except BlockingIOError:
                return checksum
            if not got:
                if self._received:
                    raise RuntimeError("a sender closed its socket mid-batch")
                self.closed = True
                return checksum
            self._received += got
            if self._received == len(self._buffer):
                checksum += self._buffer[-1]
                self.completed += 1  # batches read in all
                self._received = 0
            self._set_mark()
            if got < wanted:  # drained: wait to be woken again
                return checksum

    def _set_mark(self) -> None:
        if not self._low_water:
            return
        mark = min(self._low_water, len(self._buffer) - self._received)
        if mark != self._mark:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, mark)
            self._mark = mark


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads, by name (libzmq names its own ``ZMQbg/...``; the
    Python threads, main and the feed's, are ``python``), from ``/proc`` (Linux)."""
    totals: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            seconds = cpu_seconds(task / "stat")
        except OSError:  # the thread ended meanwhile
            continue
        totals[name] = totals.get(name, 0.0) + seconds
    return totals


def cpu_seconds(stat: Path) -> float:
    """User plus system CPU seconds in a ``/proc/.../stat`` file (a process's or a thread's)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_configuration(producers: int, batches: int, epochs: int) -> dict[str, Any]:
    """One feed, ``producers`` synthetic producers, a warm-up epoch and ``epochs`` timed ones."""
    from zerofeed.consumer import DataConfig, Feed, ServingConfig

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory() as folder:
        manifest = Path(folder) / "ready.csv"
        rows = (f"img/{i}.jpg,{i % 10}" for i in range(batches * BATCH_SIZE))
        manifest.write_text("path,label\n" + "\n".join(rows) + "\n")
        feed = Feed(
            manifest,
            data=DataConfig(batch_size=BATCH_SIZE, image_size=IMAGE_SIZE, seed=0),
            serving=ServingConfig(
                bind=endpoint,
                local_producers=0,
                max_queue_size=2 * _CREDITS * producers,
                heartbeat_interval=0.25,
                timeout=60,
            ),
        )
        started = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.ceiling", "--synthetic-producer", endpoint, f"p{i}"],
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(producers)
        ]
        try:
            with feed:
                checksum = 0
                for batch in range(len(feed)):
                    checksum += int(feed.get(0, batch).images[-1, -1, -1, -1])
                wall, cpu, threads = time.perf_counter(), time.process_time(), thread_cpu()
                main_cpu = time.thread_time()
                for epoch in range(1, epochs + 1):
                    for batch in range(len(feed)):
                        checksum += int(feed.get(epoch, batch).images[-1, -1, -1, -1])
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                main_cpu = time.thread_time() - main_cpu
                threads = {
                    name: seconds - threads.get(name, 0.0) for name, seconds in thread_cpu().items()
                }
        finally:
            reports = []
            for process in started:
                out, _ = process.communicate(timeout=60)
                reports.append(json.loads(out.strip().splitlines()[-1]))
    if checksum == 0:
        raise RuntimeError("the batches arrived empty")
    timed = epochs * batches
    sent = sum(r["sent"] for r in reports)
    return {
        **_figures(timed, wall, cpu, threads),
        "main_thread_cpu_ms_per_batch": 1000 * main_cpu / timed,
        "producer_cpu_ms_per_batch": 1000 * sum(r["cpu_s"] for r in reports) / sent,
    }


def tf_service_server(port: str) -> None:
    """A tf.data service dispatcher and one worker on ``port`` (and a free one), until killed."""
    import tensorflow as tf

    service = tf.data.experimental.service
    dispatcher = service.DispatchServer(service.DispatcherConfig(port=int(port)))
    address = dispatcher.target.split("://")[1]
    worker = service.WorkerServer(service.WorkerConfig(dispatcher_address=address))
    print("ready", flush=True)
    worker.join()


def tf_service_consumer(port: str, batches: str, epochs: str) -> None:
    """Read ``batches`` ready batches an epoch from the tf.data service on ``port``, a warm-up
    epoch then ``epochs`` timed ones, as numpy (as ``Feed.get`` gives them); print the figures."""
    import tensorflow as tf

    height, width = IMAGE_SIZE

    def ready(i: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        fill = tf.cast(i % 251 + 1, tf.uint8)
        return tf.fill([BATCH_SIZE, height, width, 3], fill), tf.fill([BATCH_SIZE], i)

    dataset = (
        tf.data.Dataset.range(int(batches))
        .map(ready)
        .apply(
            tf.data.experimental.service.distribute(
                processing_mode="parallel_epochs",
                service=f"grpc://localhost:{port}",
                compression=None,  # zerofeed sends batches as they are, too
            )
        )
    )
    checksum = 0
    for images, _ in dataset:
        checksum += int(images.numpy()[-1, -1, -1, -1])
    wall, cpu, threads = time.perf_counter(), time.process_time(), thread_cpu()
    timed = 0
    for _ in range(int(epochs)):
        for images, _ in dataset:
            checksum += int(images.numpy()[-1, -1, -1, -1])
            timed += 1
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    threads = {name: seconds - threads.get(name, 0.0) for name, seconds in thread_cpu().items()}
    if checksum == 0 or timed != int(batches) * int(epochs):
        raise RuntimeError(f"tf.data service gave {timed} batches, checksum {checksum}")
    print(json.dumps(_figures(timed, wall, cpu, threads)), flush=True)


def run_tf_service(batches: int, epochs: int) -> dict[str, Any]:
    """The tf.data service (dispatcher and worker in one process) and its consumer in another."""
    port = str(free_port())
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.ceiling", "--tf-service-server", port],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if server.stdout is None or server.stdout.readline().strip() != "ready":
            raise RuntimeError("the tf.data service did not start")
        consumer = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.ceiling",
                "--tf-service-consumer",
                port,
                str(batches),
                str(epochs),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        server_cpu = cpu_seconds(Path(f"/proc/{server.pid}/stat"))
    finally:
        server.kill()
        server.wait(timeout=30)
    figures = json.loads(consumer.stdout.strip().splitlines()[-1])
    sent = batches * (epochs + 1)  # with the warm-up epoch, as the synthetic producers count
    return {**figures, "producer_cpu_ms_per_batch": 1000 * server_cpu / sent}


def _figures(timed: int, wall: float, cpu: float, threads: dict[str, float]) -> dict[str, Any]:
    return {
        "images_per_s": timed * BATCH_SIZE / wall,
        "batches_per_s": timed / wall,
        "consumer_cpu_ms_per_batch": 1000 * cpu / timed,
        "consumer_thread_cpu_ms_per_batch": {
            name: 1000 * seconds / timed for name, seconds in sorted(threads.items())
        },
        "gbytes_per_s": timed * BATCH_SIZE * IMAGE_SIZE[0] * IMAGE_SIZE[1] * 3 / wall / 1e9,
    }


def report(pooled: dict[str, list[dict[str, Any]]], *, batches: int, epochs: int) -> str:
    rounds = max(len(runs) for runs in pooled.values())
    lines = [
        "# Consumer ceiling: ready batches from synthetic producers over TCP on loopback",
        "",
        f"{platform.machine()}, {machine_cores()} cores (producers and consumer share them); "
        f"batch {BATCH_SIZE}x{IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}x3 uint8 "
        f"({BATCH_SIZE * IMAGE_SIZE[0] * IMAGE_SIZE[1] * 3 / 1e6:.1f} MB); {batches} batches an "
        f"epoch, {epochs} timed epoch(s) after a warm-up; median of {rounds} rounds. Command: "
        "`python -m bench.ceiling`. The tf.data service row: a dispatcher and one worker in a "
        "process of their own, making the same batches (`tf.fill`), read with "
        '`distribute(processing_mode="parallel_epochs", compression=None)` as numpy, over gRPC '
        "on loopback. The plain-socket rows: sender processes write the same bytes down plain "
        "sockets, read into reused, pre-faulted buffers (the kernel's floor), woken at every "
        "arrival or with `SO_RCVLOWAT` kept at 1 MiB.",
        "",
        "| row | images/s | GB/s | consumer CPU ms per batch | of which libzmq I/O thread "
        "| of which Python threads | sender CPU ms per batch |",
        "|---|---|---|---|---|---|---|",
    ]
    for row, runs in pooled.items():

        def median(key: str, runs: list[dict[str, Any]] = runs) -> float:
            return statistics.median(r[key] for r in runs)

        split = ["n/a", "n/a"]  # TF's own threads are named after the thread that made them
        by_thread = [r["consumer_thread_cpu_ms_per_batch"] for r in runs]
        if row.startswith("zerofeed"):
            split = [
                f"{statistics.median(sum(ms for n, ms in t.items() if zmq_owned(n)) for t in by_thread):.2f}",
                f"{statistics.median(sum(ms for n, ms in t.items() if not zmq_owned(n)) for t in by_thread):.2f}",
            ]
        sender = f"{median('producer_cpu_ms_per_batch'):.2f}"
        lines.append(
            f"| {row} | **{median('images_per_s'):,.0f}** | {median('gbytes_per_s'):.2f} | "
            f"{median('consumer_cpu_ms_per_batch'):.2f} | {split[0]} | {split[1]} | {sender} |"
        )
    return "\n".join(lines) + "\n"


def zmq_owned(thread_name: str) -> bool:
    """libzmq's own threads (``ZMQbg/IO/0``, ``ZMQbg/Reaper``)."""
    return thread_name.startswith("ZMQbg")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__)
    parser.add_argument("--producers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--batches", type=int, default=300, help="batches an epoch")
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-tf-service", action="store_true", help="skip the tf.data service row")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--no-socket-floor", action="store_true", help="skip the plain-socket rows")
    parser.add_argument("--synthetic-producer", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--socket-sender", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--tf-service-server", help=argparse.SUPPRESS)
    parser.add_argument("--tf-service-consumer", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.synthetic_producer:
        synthetic_producer(*args.synthetic_producer)
        return
    if args.socket_sender:
        socket_sender(*args.socket_sender)
        return
    if args.tf_service_server:
        tf_service_server(args.tf_service_server)
        return
    if args.tf_service_consumer:
        tf_service_consumer(*args.tf_service_consumer)
        return
    pooled: dict[str, list[dict[str, Any]]] = {}
    for round_number in range(args.rounds):
        rows: list[tuple[str, Any]] = [
            (f"zerofeed, {n} producer(s)", partial(run_configuration, n, args.batches, args.epochs))
            for n in args.producers
        ]
        if not args.no_socket_floor:
            rows += [
                (name, partial(run_socket_floor, args.batches, args.epochs, **options))
                for name, options in _FLOOR_ROWS
            ]
        if not args.no_tf_service:
            rows.append(("tf.data service", partial(run_tf_service, args.batches, args.epochs)))
        for row, run in rows:
            result = run()
            pooled.setdefault(row, []).append(result)
            print(
                f"round {round_number + 1}: {row}: {result['images_per_s']:,.0f} images/s, "
                f"consumer {result['consumer_cpu_ms_per_batch']:.2f} ms CPU per batch",
                flush=True,
            )
    text = report(pooled, batches=args.batches, epochs=args.epochs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ceiling.md").write_text(text)
    (args.out / "ceiling.json").write_text(json.dumps(pooled))
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])

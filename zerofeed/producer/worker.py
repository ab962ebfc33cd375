"""One producer worker: a DEALER connection that takes tasks and sends back batches.

Work happens on the main thread; a small heartbeat thread tells the consumer the process is alive
even while one sample takes long (a sample that hangs is cut off by the per-sample timeout, see
:mod:`zerofeed.producer.batch`). Both threads use the socket only under one lock; the socket's
monitor (:class:`~zerofeed.producer.link.LinkWatch`, which says why no consumer answers) is the
main thread's alone. A worker (re)announces itself with ``HELLO`` whenever it connects, and
reconnects when the consumer has been silent too long: a restarted consumer is found again.
"""

from __future__ import annotations

import logging
import multiprocessing.connection
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zmq

from zerofeed.common.curve import load_public, load_secret
from zerofeed.common.errors import ConfigError, ProtocolError
from zerofeed.common.protocol import (
    PROTOCOL_VERSION,
    Bye,
    Heartbeat,
    Hello,
    Incompatible,
    Message,
    Result,
    Task,
    Unknown,
    Welcome,
    decode,
    encode,
)
from zerofeed.common.slots import SlotFile
from zerofeed.producer.batch import BatchMaker
from zerofeed.producer.config import ProducerConfig
from zerofeed.producer.link import LinkWatch
from zerofeed.producer.report import ProducerReport

__all__ = ["Worker"]

log = logging.getLogger("zerofeed.producer")

_POLL_SECONDS = 0.2
_BYE_LINGER_MS = 1000
_TASK_SLACK = 4


class Worker:
    """Serves consumers at ``config.endpoint`` until ``should_stop()`` becomes true."""

    def __init__(
        self,
        config: ProducerConfig,
        *,
        name: str,
        maker: BatchMaker,
        transforms: tuple[str, ...],
        should_stop: Callable[[], bool],
        parent_sentinel: int | None = None,
        report_requested: threading.Event | None = None,
    ) -> None:
        self._config = config
        self._name = name
        self._maker = maker
        self._transforms = transforms
        self._should_stop = should_stop
        self._parent_sentinel = parent_sentinel
        self.report = ProducerReport(
            name, maker, interval=config.report_interval, requested=report_requested
        )
        self._curve = (
            (load_public(config.server_key), load_secret(config.secret_key))
            if config.server_key is not None and config.secret_key is not None
            else None
        )
        self._slots = _map_slots(config.slots, name)

    def hello(self) -> Hello:
        """This worker's ``HELLO``."""
        return Hello(
            producer=self._name,
            credits=self._config.prefetch,
            transforms=self._transforms,
            slots=str(self._slots.path) if self._slots is not None else "",
            pid=os.getpid() if self._slots is not None else None,
        )

    def make(self, task: Task) -> Result:
        """The result of ``task``, written into its shared-memory slot when it names one."""
        return self._maker.make(task, self._slot_array(task))

    def _slot_array(self, task: Task) -> np.ndarray | None:
        if task.slot is None or self._slots is None:
            return None
        height, width = task.image_size
        shape = (len(task.samples), height, width, 3)
        dtype = np.dtype(task.dtype)
        try:
            buffer = self._slots.buffer(task.slot, int(np.prod(shape)) * dtype.itemsize)
        except ConfigError as exc:
            log.warning("%s: %s; sending task %d's images instead", self._name, exc, task.task_id)
            return None
        return np.frombuffer(memoryview(buffer), dtype=dtype).reshape(shape)

    def run(self) -> None:
        """Serve until stopped; each loop is one connection (a new one after a silent consumer)."""
        context = zmq.Context()
        try:
            while not self._stopping():
                served = _Connection(self, context).serve()
                if served and self._config.exit_with_consumer:
                    log.info("%s: the consumer is gone; exiting (--exit-with-consumer)", self._name)
                    return
        finally:
            context.destroy(linger=0)

    def _stopping(self) -> bool:
        if self._should_stop():
            return True
        if self._parent_sentinel is not None:
            # Readable (end of file) once the supervisor is gone, however it went. Not
            # zmq.select: it reports a hung-up pipe in its error list, not as readable.
            return bool(multiprocessing.connection.wait([self._parent_sentinel], timeout=0))
        return False


class _Connection:
    """One DEALER socket's life: hello, tasks, heartbeats, then bye or reconnect."""

    def __init__(self, worker: Worker, context: zmq.Context) -> None:
        self._worker = worker
        self._config = worker._config
        self._socket = context.socket(zmq.DEALER)
        if worker._curve is not None:
            server_public, keys = worker._curve
            self._socket.curve_serverkey = server_public
            self._socket.curve_publickey = keys.public
            self._socket.curve_secretkey = keys.secret
        self._socket.linger = 0
        self._socket.sndhwm = self._socket.rcvhwm = 1000
        self._pending: deque[Task] = deque()
        self._session: str | None = None
        self._last_heard = time.monotonic()
        self._last_sent = 0.0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._link = LinkWatch(
            self._socket,
            endpoint=self._config.endpoint,
            name=worker._name,
            curve=worker._curve is not None,
            warn_after=self._config.silence_warning,
        )

    def serve(self) -> bool:
        """Serve this connection; True if a consumer welcomed us and then went silent."""
        heartbeats = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        linger = 0
        try:
            self._socket.connect(self._config.endpoint)
            heartbeats.start()
            self._send(self._worker.hello())
            while not self._worker._stopping():
                self._receive(timeout=0 if self._pending else _POLL_SECONDS)
                self._link.check(welcomed=self._session is not None)
                if self._silent_too_long():
                    return self._session is not None
                if self._pending:
                    self._work_one()
                self._worker.report.log_if_due(len(self._pending), self._config.prefetch)
            self._send(Bye(returned=tuple(task.task_id for task in self._pending)))
            linger = _BYE_LINGER_MS
            return False  # let BYE reach the consumer, so it need not find out later
        finally:
            self._closing.set()
            if heartbeats.is_alive():
                heartbeats.join()
            self._link.close()
            self._socket.close(linger=linger)

    def _beat(self) -> None:
        interval = self._config.heartbeat_interval
        while not self._closing.wait(interval / 4):
            if time.monotonic() - self._last_sent >= interval:
                self._send(Heartbeat())

    def _silent_too_long(self) -> bool:
        silent = time.monotonic() - self._last_heard
        if silent < self._config.reconnect_after:
            return False
        if self._session is not None:
            log.warning(
                "%s: consumer %s silent for %.0f s; reconnecting to %s",
                self._worker._name,
                self._session,
                silent,
                self._config.endpoint,
            )
        return True

    def _receive(self, *, timeout: float) -> None:
        for frames in self._receive_frames(timeout):
            self._last_heard = time.monotonic()
            try:
                self._handle(decode(frames))
            except ProtocolError as exc:
                log.warning("%s: rejected a message from the consumer: %s", self._worker._name, exc)

    def _receive_frames(self, timeout: float) -> list[list[bytes]]:
        received: list[list[bytes]] = []
        with self._lock:
            if not self._socket.poll(timeout * 1000):
                return received
            while True:
                try:
                    received.append(self._socket.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    return received

    def _handle(self, message: Message) -> None:
        if isinstance(message, Task):
            if len(self._pending) >= self._config.prefetch + _TASK_SLACK:
                log.warning(
                    "%s: consumer sent more tasks than credits; dropping task %d",
                    self._worker._name,
                    message.task_id,
                )
                return
            self._pending.append(message)
        elif isinstance(message, Welcome):
            if message.session != self._session:
                if self._session is not None:
                    self._pending.clear()
                log.info(
                    "%s: serving consumer %s at %s",
                    self._worker._name,
                    message.session,
                    self._config.endpoint,
                )
                self._session = message.session
        elif isinstance(message, Incompatible):
            log.error(
                "%s: the consumer at %s cannot read this producer's messages: it speaks "
                "protocol version %d, this producer %d (%s); run the same zerofeed version on both",
                self._worker._name,
                self._config.endpoint,
                message.speaks,
                PROTOCOL_VERSION,
                message.reason,
            )
        elif isinstance(message, Unknown):
            self._pending.clear()
            self._send(self._worker.hello())

    def _work_one(self) -> None:
        task = self._pending.popleft()
        result = self._worker.make(task)
        started = time.perf_counter()
        self._send_frames(encode(result), copy=False)
        self._worker.report.add_send(time.perf_counter() - started)

    def _send(self, message: Message) -> None:
        self._send_frames(encode(message), copy=True)

    def _send_frames(self, frames: list[object], *, copy: bool) -> None:
        try:
            with self._lock:
                self._socket.send_multipart(frames, zmq.NOBLOCK, copy=copy)
                self._last_sent = time.monotonic()
        except zmq.Again:
            if self._session is not None:  # before a WELCOME, LinkWatch says what is wrong
                log.warning("%s: consumer is not reading; dropped a message", self._worker._name)


def _map_slots(slots: tuple[Path, int, int] | None, name: str) -> SlotFile | None:
    """Map the consumer's slot file; without it (gone, unreadable) batches go over the socket."""
    if slots is None:
        return None
    path, slot_bytes, count = slots
    try:
        return SlotFile(path, slot_bytes=slot_bytes, count=count)
    except ConfigError as exc:
        log.warning("%s: %s; sending batches over the socket instead", name, exc)
        return None

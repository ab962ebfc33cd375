"""One producer worker: a DEALER connection per consumer endpoint, taking tasks from each in turn.

Work happens on the main thread; a small heartbeat thread tells the consumers the process is alive
even while one sample takes long (a sample that hangs is cut off by the per-sample timeout, see
:mod:`zerofeed.producer.batch`). Both threads use the sockets only under one lock; each socket's
monitor (:class:`~zerofeed.producer.link.LinkWatch`, which says why no consumer answers) is the
main thread's alone. A worker (re)announces itself with ``HELLO`` whenever it connects, and
reconnects a link whose consumer has been silent too long: a restarted consumer is found again.
With several endpoints (one consumer per trainer rank) the worker shares itself among them: see
:class:`_Links`.
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
    """Serves the consumers at ``config.endpoints`` until ``should_stop()`` becomes true."""

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
            reads=self._config.allow,
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
        """Serve every endpoint until stopped (or, with ``exit_with_consumer``, until the
        consumers served have gone)."""
        context = zmq.Context()
        try:
            while not self._stopping():
                served = _Links(self, context).serve()
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


class _Link:
    """One consumer endpoint: its DEALER socket, the tasks it sent, and what we heard of it.

    The socket is used only under the worker's links lock (:class:`_Links`); the monitor
    (:class:`LinkWatch`) and the task queue are the main thread's alone.
    """

    def __init__(self, worker: Worker, context: zmq.Context, endpoint: str) -> None:
        self.endpoint = endpoint
        self.socket = context.socket(zmq.DEALER)
        if worker._curve is not None:
            server_public, keys = worker._curve
            self.socket.curve_serverkey = server_public
            self.socket.curve_publickey = keys.public
            self.socket.curve_secretkey = keys.secret
        self.socket.linger = 0
        self.socket.sndhwm = self.socket.rcvhwm = 1000
        self.pending: deque[Task] = deque()
        self.session: str | None = None
        self.last_heard = time.monotonic()
        self.last_sent = 0.0
        self.watch = LinkWatch(
            self.socket,
            endpoint=endpoint,
            name=worker._name,
            curve=worker._curve is not None,
            warn_after=worker._config.silence_warning,
        )
        self.socket.connect(endpoint)

    def close(self, linger: int = 0) -> None:
        self.watch.close()
        self.socket.close(linger=linger)


class _Links:
    """A worker's connections to every consumer endpoint, served in turn.

    Each consumer (one per trainer rank) gets the worker's full ``prefetch`` credits and sends
    tasks only as fast as it consumes batches, so taking one queued task from each link in turn
    shares the worker fairly: a slow rank gets what it asks for, a fast one the rest, and a
    silent one (dead, restarting) only its few queued tasks before it is reconnected.

    One lock guards every socket; the heartbeat thread takes it only to send a heartbeat.
    """

    def __init__(self, worker: Worker, context: zmq.Context) -> None:
        self._worker = worker
        self._config = worker._config
        self._context = context
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._links = [_Link(worker, context, endpoint) for endpoint in self._config.endpoints]
        self._turn = 0
        self._dropped = 0  # links of consumers served and gone (exit_with_consumer)

    def serve(self) -> bool:
        """Serve until stopped (False) or, with ``exit_with_consumer``, until every consumer
        served has gone (True)."""
        heartbeats = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        linger = 0
        try:
            heartbeats.start()
            for link in self._links:
                self._send(link, self._worker.hello())
            while not self._worker._stopping():
                self._receive(timeout=0 if self._queued() else _POLL_SECONDS)
                for index, link in reversed(list(enumerate(self._links))):
                    link.watch.check(welcomed=link.session is not None)
                    if self._silent_too_long(link):
                        if link.session is not None and self._config.exit_with_consumer:
                            self._drop(index)
                        else:
                            self._reconnect(index)
                if self._dropped and not any(link.session for link in self._links):
                    return True  # every consumer served has gone (exit_with_consumer)
                serving = self._next_with_work()
                if serving is not None:
                    self._work_one(serving)
                queued = self._queued()
                self._worker.report.log_if_due(queued, self._config.prefetch * len(self._links))
            for link in self._links:
                self._send(link, Bye(returned=tuple(task.task_id for task in link.pending)))
            linger = _BYE_LINGER_MS
            return False  # let BYE reach the consumers, so they need not find out later
        finally:
            self._closing.set()
            if heartbeats.is_alive():
                heartbeats.join()
            for link in self._links:
                link.close(linger)

    def _queued(self) -> int:
        return sum(len(link.pending) for link in self._links)

    def _next_with_work(self) -> _Link | None:
        """The next link, in turn after the last one served, that has a task queued."""
        count = len(self._links)
        for step in range(count):
            link = self._links[(self._turn + step) % count]
            if link.pending:
                self._turn = (self._turn + step + 1) % count
                return link
        return None

    def _drop(self, index: int) -> None:
        """Stop serving a consumer that has gone, for good (``exit_with_consumer``)."""
        with self._lock:
            link = self._links.pop(index)
            link.close()
        self._turn = 0
        self._dropped += 1
        log.info("%s: consumer %s at %s has gone", self._worker._name, link.session, link.endpoint)

    def _reconnect(self, index: int) -> None:
        """A new socket for a silent consumer: a restarted one is found again."""
        with self._lock:
            self._links[index].close()
            link = self._links[index] = _Link(
                self._worker, self._context, self._links[index].endpoint
            )
        self._send(link, self._worker.hello())

    def _beat(self) -> None:
        interval = self._config.heartbeat_interval
        heartbeat = encode(Heartbeat())
        while not self._closing.wait(interval / 4):
            with self._lock:
                for link in self._links:
                    if time.monotonic() - link.last_sent >= interval:
                        self._send_locked(link, heartbeat, copy=True)

    def _silent_too_long(self, link: _Link) -> bool:
        silent = time.monotonic() - link.last_heard
        if silent < self._config.reconnect_after:
            return False
        if link.session is not None and not self._config.exit_with_consumer:
            log.warning(
                "%s: consumer %s silent for %.0f s; reconnecting to %s",
                self._worker._name,
                link.session,
                silent,
                link.endpoint,
            )
        return True

    def _receive(self, *, timeout: float) -> None:
        for link, frames in self._receive_frames(timeout):
            link.last_heard = time.monotonic()
            try:
                self._handle(link, decode(frames))
            except ProtocolError as exc:
                log.warning(
                    "%s: rejected a message from the consumer at %s: %s",
                    self._worker._name,
                    link.endpoint,
                    exc,
                )

    def _receive_frames(self, timeout: float) -> list[tuple[_Link, list[bytes]]]:
        received: list[tuple[_Link, list[bytes]]] = []
        with self._lock:
            poller = zmq.Poller()
            for link in self._links:
                poller.register(link.socket, zmq.POLLIN)
            ready = dict(poller.poll(round(timeout * 1000)))
            for link in self._links:
                if link.socket not in ready:
                    continue
                while True:
                    try:
                        received.append((link, link.socket.recv_multipart(zmq.NOBLOCK)))
                    except zmq.Again:
                        break
        return received

    def _handle(self, link: _Link, message: Message) -> None:
        name = self._worker._name
        if isinstance(message, Task):
            if len(link.pending) >= self._config.prefetch + _TASK_SLACK:
                log.warning(
                    "%s: the consumer at %s sent more tasks than credits; dropping task %d",
                    name,
                    link.endpoint,
                    message.task_id,
                )
                return
            link.pending.append(message)
        elif isinstance(message, Welcome):
            if message.session != link.session:
                if link.session is not None:
                    link.pending.clear()
                log.info("%s: serving consumer %s at %s", name, message.session, link.endpoint)
                link.session = message.session
        elif isinstance(message, Incompatible):
            log.error(
                "%s: the consumer at %s cannot read this producer's messages: it speaks "
                "protocol version %d, this producer %d (%s); run the same zerofeed version on both",
                name,
                link.endpoint,
                message.speaks,
                PROTOCOL_VERSION,
                message.reason,
            )
        elif isinstance(message, Unknown):
            link.pending.clear()
            self._send(link, self._worker.hello())

    def _work_one(self, link: _Link) -> None:
        task = link.pending.popleft()
        result = self._worker.make(task)
        started = time.perf_counter()
        self._send_frames(link, encode(result), copy=False)
        self._worker.report.add_send(time.perf_counter() - started)

    def _send(self, link: _Link, message: Message) -> None:
        self._send_frames(link, encode(message), copy=True)

    def _send_frames(self, link: _Link, frames: list[object], *, copy: bool) -> None:
        with self._lock:
            self._send_locked(link, frames, copy=copy)

    def _send_locked(self, link: _Link, frames: list[object], *, copy: bool) -> None:
        try:
            link.socket.send_multipart(frames, zmq.NOBLOCK, copy=copy)
            link.last_sent = time.monotonic()
        except zmq.Again:
            if link.session is not None:  # before a WELCOME, LinkWatch says what is wrong
                log.warning(
                    "%s: the consumer at %s is not reading; dropped a message",
                    self._worker._name,
                    link.endpoint,
                )


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

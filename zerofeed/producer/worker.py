"""One producer worker: a DEALER connection that takes tasks and sends back batches.

The worker is single-threaded. Between samples it sends heartbeats, so a consumer can tell a busy
worker from a dead or hung one. It (re)announces itself with ``HELLO`` whenever it connects, and
reconnects when the consumer has been silent too long: a restarted consumer is found again.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

import zmq

from zerofeed.common.errors import ProtocolError
from zerofeed.common.protocol import (
    Bye,
    Heartbeat,
    Hello,
    Message,
    Task,
    Unknown,
    Welcome,
    decode,
    encode,
)
from zerofeed.producer.batch import BatchMaker
from zerofeed.producer.config import ProducerConfig

__all__ = ["Worker"]

log = logging.getLogger("zerofeed.producer")

_POLL_SECONDS = 0.2
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
    ) -> None:
        self._config = config
        self._name = name
        self._maker = maker
        self._transforms = transforms
        self._should_stop = should_stop
        self._parent_sentinel = parent_sentinel

    def run(self) -> None:
        """Serve until stopped; each loop is one connection (a new one after a silent consumer)."""
        context = zmq.Context()
        try:
            while not self._stopping():
                _Connection(self, context).serve()
        finally:
            context.destroy(linger=0)

    def _stopping(self) -> bool:
        if self._should_stop():
            return True
        if self._parent_sentinel is not None:
            return bool(zmq.select([self._parent_sentinel], [], [], 0)[0])
        return False


class _Connection:
    """One DEALER socket's life: hello, tasks, heartbeats, then bye or reconnect."""

    def __init__(self, worker: Worker, context: zmq.Context) -> None:
        self._worker = worker
        self._config = worker._config
        self._socket = context.socket(zmq.DEALER)
        self._socket.linger = 0
        self._socket.sndhwm = self._socket.rcvhwm = 1000
        self._pending: deque[Task] = deque()
        self._session: str | None = None
        self._last_heard = time.monotonic()
        self._last_sent = 0.0

    def serve(self) -> None:
        try:
            self._socket.connect(self._config.endpoint)
            self._send(
                Hello(
                    producer=self._worker._name,
                    credits=self._config.prefetch,
                    transforms=self._worker._transforms,
                )
            )
            while not self._worker._stopping():
                self._receive(timeout=0 if self._pending else _POLL_SECONDS)
                if self._silent_too_long():
                    return
                if self._pending:
                    self._work_one()
                self._heartbeat_if_due()
            self._send(Bye(returned=tuple(task.task_id for task in self._pending)))
        finally:
            self._socket.close(linger=0)

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
        if not self._socket.poll(timeout * 1000):
            return
        while True:
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._last_heard = time.monotonic()
            try:
                self._handle(decode(frames))
            except ProtocolError as exc:
                log.warning("%s: rejected a message from the consumer: %s", self._worker._name, exc)

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
        elif isinstance(message, Unknown):
            self._pending.clear()
            self._send(
                Hello(
                    producer=self._worker._name,
                    credits=self._config.prefetch,
                    transforms=self._worker._transforms,
                )
            )

    def _work_one(self) -> None:
        task = self._pending.popleft()
        result = self._worker._maker.make(task, tick=self._heartbeat_if_due)
        self._send_frames(encode(result), copy=False)
        self._last_sent = time.monotonic()

    def _heartbeat_if_due(self) -> None:
        if time.monotonic() - self._last_sent >= self._config.heartbeat_interval:
            self._send(Heartbeat())

    def _send(self, message: Message) -> None:
        self._send_frames(encode(message), copy=True)
        self._last_sent = time.monotonic()

    def _send_frames(self, frames: list[object], *, copy: bool) -> None:
        try:
            self._socket.send_multipart(frames, zmq.NOBLOCK, copy=copy)
        except zmq.Again:
            log.warning("%s: consumer is not reading; dropped a message", self._worker._name)

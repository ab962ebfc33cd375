"""One producer worker: a DEALER connection per consumer endpoint, taking tasks from each in turn.

Two threads, each with its own sockets (one owner per socket): the **link thread**
(:class:`_LinkThread`) owns every DEALER, its monitor (:class:`~zerofeed.producer.link.LinkWatch`,
which says why no consumer answers) and the heartbeats, so a consumer hears from a worker that is
busy with one long sample; the **render thread** (the one that calls :meth:`Worker.run`, where the
per-sample timeout's ``SIGALRM`` can fire, see :mod:`zerofeed.producer.batch`) makes batches. Tasks
go to the renderer through a queue, results come back through an inproc ``PAIR`` (zero-copy) that
also wakes the link thread. A worker (re)announces itself with ``HELLO`` whenever it connects, and
reconnects a link whose consumer has been silent too long: a restarted consumer is found again.
With several endpoints (one consumer per trainer rank) the worker shares itself among them: see
:class:`_LinkThread`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing.connection
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from zerofeed.common.curve import load_public, load_secret
from zerofeed.common.errors import ConfigError, ProtocolError
from zerofeed.common.producer_config import ProducerConfig
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
from zerofeed.producer.accelerators import decode_path
from zerofeed.producer.batch import BatchMaker
from zerofeed.producer.link import LinkWatch
from zerofeed.producer.report import ProducerReport

__all__ = ["Worker"]

log = logging.getLogger("zerofeed.producer")

_POLL_SECONDS = 0.2
_BYE_LINGER_MS = 1000
_TASK_SLACK = 4
_HANDED_AHEAD = 2  # tasks given to the renderer and not back: one made, one waiting


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
        on_batch: Callable[[int, float, float], None] | None = None,
    ) -> None:
        """``on_batch(images, seconds, cpu_seconds)`` is called after each batch made and handed
        on, with the seconds that took and the CPU seconds this thread got meanwhile (the
        supervisor sizes the workers from these)."""
        self._config = config
        self._on_batch = on_batch
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
            decoder=decode_path().summary,
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
                if self._serve(context) and self._config.exit_with_consumer:
                    log.info("%s: the consumer is gone; exiting (--exit-with-consumer)", self._name)
                    return
        finally:
            context.destroy(linger=0)

    def _serve(self, context: zmq.Context) -> bool:
        """Render what the link thread hands over until stopped (False) or until every consumer
        served has gone (True)."""
        links = _LinkThread(self, context)
        results = links.render_end()
        credits = self._config.prefetch * len(self._config.endpoints)
        links.start()
        try:
            while not links.finished.is_set() and not self._stopping():
                try:
                    handed = links.tasks.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    pass
                else:
                    self._render(handed, results)
                self.report.log_if_due(links.queued, credits)
        finally:
            with contextlib.suppress(zmq.Again):
                results.send(_LinkThread.STOP, zmq.NOBLOCK)
            links.join(timeout=_BYE_LINGER_MS / 1000 + 10)
            results.close()
        if links.error is not None:
            raise links.error
        return links.all_served_gone

    def _render(self, handed: _Handed, results: zmq.Socket) -> None:
        began, began_cpu = time.perf_counter(), time.thread_time()
        result = self.make(handed.task)
        started = time.perf_counter()
        route = [str(handed.serial).encode(), (handed.session or "").encode()]
        results.send_multipart([*route, *encode(result)], copy=False)
        ended = time.perf_counter()
        self.report.add_send(ended - started)
        if self._on_batch is not None:
            self._on_batch(len(handed.task.samples), ended - began, time.thread_time() - began_cpu)

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

    Everything here, the socket, its monitor (:class:`LinkWatch`) and the task queue, is the link
    thread's alone (:class:`_LinkThread`).
    """

    def __init__(self, worker: Worker, context: zmq.Context, endpoint: str, *, serial: int) -> None:
        self.endpoint = endpoint
        self.serial = serial  # tells a reconnected link's results from its predecessor's
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


@dataclass(frozen=True)
class _Handed:
    """A task given to the renderer, with the link (and its consumer session) it came from."""

    serial: int
    session: str | None
    task: Task


class _LinkThread:
    """A worker's connections to every consumer endpoint, served in turn, on a thread of their own.

    Each consumer (one per trainer rank) gets the worker's full ``prefetch`` credits and sends
    tasks only as fast as it consumes batches, so handing the renderer one queued task from each
    link in turn shares the worker fairly: a slow rank gets what it asks for, a fast one the rest,
    and a silent one (dead, restarting) only its few queued tasks before it is reconnected.

    The thread owns every DEALER and the ``PAIR`` end it binds; the render thread owns the other
    end (:meth:`render_end`) and takes tasks from :attr:`tasks`. Nothing else is shared: the
    renderer sends results and, once, ``STOP``; the link thread sets :attr:`finished` when it ends
    (stopped, every consumer served gone, or an error, kept in :attr:`error`).
    """

    STOP = b"stop"

    def __init__(self, worker: Worker, context: zmq.Context) -> None:
        self._worker = worker
        self._config = worker._config
        self._context = context
        self._serials = itertools.count()
        self._links = [self._connect(endpoint) for endpoint in self._config.endpoints]
        self._turn = 0
        self._dropped = 0  # links of consumers served and gone (exit_with_consumer)
        self._handed = 0  # tasks given to the renderer whose result has not come back
        self._results = context.socket(zmq.PAIR)
        self._results.linger = 0
        self._results_endpoint = f"inproc://zerofeed-results-{id(self)}"
        self._results.bind(self._results_endpoint)
        self.tasks: queue.SimpleQueue[_Handed] = queue.SimpleQueue()
        self.queued = 0  # tasks waiting, for the renderer's report (written by this thread only)
        self.finished = threading.Event()
        self.all_served_gone = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="links", daemon=True)

    def render_end(self) -> zmq.Socket:
        """The renderer's end of the results ``PAIR``: its own socket, for results and ``STOP``."""
        end = self._context.socket(zmq.PAIR)
        end.linger = 0
        end.connect(self._results_endpoint)
        return end

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("%s: the link thread did not stop within %.0f s", self._worker._name, timeout)

    def _run(self) -> None:
        linger = 0
        try:
            for link in self._links:
                self._send(link, encode(self._worker.hello()))
            if self._serve():
                self.all_served_gone = True
            else:
                unrendered = self._unrendered()
                for link in self._links:
                    returned = (
                        *(task.task_id for task in link.pending),
                        *unrendered.get(link.serial, ()),
                    )
                    self._send(link, encode(Bye(returned=tuple(returned))))
                linger = _BYE_LINGER_MS  # let BYE reach the consumers, so they need not find out
        except BaseException as exc:  # the renderer raises it: nothing is lost in a thread
            self.error = exc
        finally:
            for link in self._links:
                link.close(linger)
            self._results.close()
            self.finished.set()

    def _serve(self) -> bool:
        """Serve until the renderer says ``STOP`` (False) or, with ``exit_with_consumer``, until
        every consumer served has gone (True)."""
        poll_ms = round(min(_POLL_SECONDS, self._config.heartbeat_interval / 4) * 1000)
        while True:
            if self._receive(poll_ms):
                return False
            for index, link in reversed(list(enumerate(self._links))):
                link.watch.check(welcomed=link.session is not None)
                if self._silent_too_long(link):
                    if link.session is not None and self._config.exit_with_consumer:
                        self._drop(index)
                    else:
                        self._reconnect(index)
            if self._dropped and not any(link.session for link in self._links):
                return True
            self._hand_over()
            self._beat()
            self.queued = self._handed + sum(len(link.pending) for link in self._links)

    def _receive(self, timeout_ms: int) -> bool:
        """Take what arrived within ``timeout_ms``: tasks and words from consumers, results from
        the renderer. True once the renderer has said ``STOP``."""
        poller = zmq.Poller()
        poller.register(self._results, zmq.POLLIN)
        for link in self._links:
            poller.register(link.socket, zmq.POLLIN)
        ready = dict(poller.poll(0 if self._wants_work() else timeout_ms))
        for link in list(self._links):
            if link.socket in ready:
                self._read_link(link)
        if self._results in ready:
            while True:
                try:
                    frames = self._results.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                if frames[0].bytes == self.STOP:
                    return True
                self._forward(int(frames[0].bytes), frames[1].bytes, frames[2:])
        return False

    def _read_link(self, link: _Link) -> None:
        while True:
            try:
                frames = link.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
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

    def _forward(self, serial: int, session: bytes, frames: list[zmq.Frame]) -> None:
        """Send a rendered result to the link it came from, if that consumer is still the one."""
        self._handed -= 1
        link = next((link for link in self._links if link.serial == serial), None)
        if link is None or (link.session or "") != session.decode():
            log.debug("%s: a result for a link reconnected since; dropped", self._worker._name)
            return
        self._send(link, frames, copy=False)

    def _wants_work(self) -> bool:
        return self._handed < _HANDED_AHEAD and any(link.pending for link in self._links)

    def _hand_over(self) -> None:
        """Keep the renderer fed: at most :data:`_HANDED_AHEAD` tasks given and not yet back,
        taken from the links in turn."""
        while self._handed < _HANDED_AHEAD:
            link = self._next_with_work()
            if link is None:
                return
            self.tasks.put(_Handed(link.serial, link.session, link.pending.popleft()))
            self._handed += 1

    def _unrendered(self) -> dict[int, list[int]]:
        """Per link serial, the tasks handed to the renderer that it never took (it has stopped)."""
        unrendered: dict[int, list[int]] = {}
        while True:
            try:
                handed = self.tasks.get_nowait()
            except queue.Empty:
                return unrendered
            unrendered.setdefault(handed.serial, []).append(handed.task.task_id)

    def _next_with_work(self) -> _Link | None:
        """The next link, in turn after the last one served, that has a task queued."""
        count = len(self._links)
        for step in range(count):
            link = self._links[(self._turn + step) % count]
            if link.pending:
                self._turn = (self._turn + step + 1) % count
                return link
        return None

    def _connect(self, endpoint: str) -> _Link:
        return _Link(self._worker, self._context, endpoint, serial=next(self._serials))

    def _drop(self, index: int) -> None:
        """Stop serving a consumer that has gone, for good (``exit_with_consumer``)."""
        link = self._links.pop(index)
        link.close()
        self._turn = 0
        self._dropped += 1
        log.info("%s: consumer %s at %s has gone", self._worker._name, link.session, link.endpoint)

    def _reconnect(self, index: int) -> None:
        """A new socket for a silent consumer: a restarted one is found again."""
        self._links[index].close()
        link = self._links[index] = self._connect(self._links[index].endpoint)
        self._send(link, encode(self._worker.hello()))

    def _beat(self) -> None:
        interval = self._config.heartbeat_interval
        now = time.monotonic()
        for link in self._links:
            if now - link.last_sent >= interval:
                self._send(link, encode(Heartbeat()))

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
            self._send(link, encode(self._worker.hello()))

    def _send(self, link: _Link, frames: list[Any], *, copy: bool = True) -> None:
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

"""The consumer's I/O thread: one ROUTER socket, owned by one thread, serving every producer.

The feed engine's :class:`~zerofeed.consumer.transport.Transport`. Callers on any thread (TensorFlow
calls from its own) never touch the socket: :meth:`Dispatcher.get` wakes the I/O thread through a
pipe and waits on a condition variable. The I/O thread receives results zero-copy, hands out tasks
as credits allow (made by the feed's :class:`~zerofeed.consumer.recipe.BatchRecipe`, a plain
object: nothing calls back into the feed), renews leases on heartbeats and re-issues the tasks of
producers that went silent.

Lock discipline: one lock (``_lock``, with its condition ``_arrived``) guards the scheduler and the
counters. Nothing is called out to while it is held except the scheduler and the slot pool, which
call nothing; the status source is called without it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from zerofeed.common.curve import KeyPair
from zerofeed.common.errors import FeedTimeoutError, ProtocolError, ZerofeedError
from zerofeed.common.protocol import (
    PROTOCOL_VERSION,
    Bye,
    Heartbeat,
    Hello,
    Incompatible,
    Result,
    Status,
    StatusRequest,
    Unknown,
    VersionMismatch,
    Welcome,
    decode,
    encode,
)
from zerofeed.consumer.auth import CurveAuthenticator
from zerofeed.consumer.recipe import BatchRecipe
from zerofeed.consumer.scheduler import (
    Key,
    ProducerInfo,
    ReadyBatch,
    ResultMismatch,
    Scheduler,
)
from zerofeed.consumer.transport import TransportCounters

__all__ = ["CurveServer", "Dispatcher", "DispatcherSettings"]

log = logging.getLogger("zerofeed.consumer")

_RECV_BURST = 256
_LOGGED_REJECTIONS_PER_SENDER = 5
_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
_TRACKED_SENDERS = 1024


@dataclass(frozen=True, kw_only=True)
class DispatcherSettings:
    """Socket and timing settings of a :class:`Dispatcher`."""

    bind: str
    heartbeat_interval: float = 1.0
    wait_log_interval: float = 10.0
    curve: CurveServer | None = None


@dataclass(frozen=True, kw_only=True)
class CurveServer:
    """CurveZMQ for the consumer's socket: its key pair and the folder of accepted producer keys."""

    keys: KeyPair
    authorized: Path
    also_authorized: frozenset[bytes] = frozenset()  # e.g. the local producers' own key


class Dispatcher:
    """Owns the ROUTER socket and its thread; a thread-safe transport of batches."""

    def __init__(
        self, settings: DispatcherSettings, scheduler: Scheduler, recipe: BatchRecipe
    ) -> None:
        self._settings = settings
        self._scheduler = scheduler
        self._recipe = recipe
        self._hint = ""
        self._status_source: Callable[[], dict[str, Any]] = dict
        self.session = uuid.uuid4().hex[:12]
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._news = False  # a batch arrived this turn of the I/O loop; waiters not woken yet
        self._failure: BaseException | None = None
        self._failure_is_own = False  # the failure is a ZerofeedError to raise as it is
        self._closing = False
        self.rejected: Counter[str] = Counter()  # by kind of fault
        self._last_rejection = ""
        self._rejected_by_sender: OrderedDict[bytes, int] = OrderedDict()
        self.wait_seconds = 0.0
        self._context = zmq.Context()
        self._socket = self._open_socket()
        self._monitor = self._socket.get_monitor_socket(zmq.EVENT_DISCONNECTED | _HANDSHAKE_FAILED)
        self.handshakes_failed = 0
        self.endpoint: str = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        self._thread = threading.Thread(target=self._run, name="zerofeed-io", daemon=True)
        self._thread.start()

    def _open_socket(self) -> zmq.Socket:
        socket = self._context.socket(zmq.ROUTER)
        curve = self._settings.curve
        self._auth = (
            CurveAuthenticator(self._context, curve.authorized, curve.also_authorized)
            if curve
            else None
        )
        if curve is not None:
            socket.curve_server = True
            socket.curve_publickey = curve.keys.public
            socket.curve_secretkey = curve.keys.secret
        socket.linger = 0
        socket.router_mandatory = 1
        socket.maxmsgsize = self._recipe.max_message_size
        socket.rcvhwm = socket.sndhwm = 10_000
        try:
            socket.bind(self._settings.bind)
        except zmq.ZMQError as exc:
            socket.close(linger=0)
            if self._auth is not None:
                self._auth.close()
            self._context.term()
            raise ZerofeedError(
                f"cannot bind {self._settings.bind!r}: {exc}. Choose a free port (port 0 picks one), "
                "or leave bind=None for a private local endpoint."
            ) from exc
        return socket

    # -- API for the training thread(s) ----------------------------------------------------------

    def get(self, key: Key, *, timeout: float | None) -> ReadyBatch:
        """Wait for batch ``key``, moving forward to its epoch if it is later than the current one.

        Raises:
            FeedTimeoutError: nothing arrived within ``timeout`` seconds.
            ZerofeedError: the I/O thread failed, :meth:`fail` was called, the feed was closed, or
                another thread moved it past ``key`` meanwhile.
        """
        started = time.monotonic()
        next_log = started + self._settings.wait_log_interval
        with self._arrived:
            self._raise_if_failed()
            moved = key[0] > self._scheduler.epoch
            if moved:
                self._scheduler.move_to((key[0], 0))
            elif key < self._scheduler.floor:
                raise ZerofeedError(
                    f"batch {key[1]} of epoch {key[0]} comes before where the feed now serves "
                    f"from (batch {self._scheduler.floor[1]} of epoch {self._scheduler.floor[0]})"
                )
            self._scheduler.demand(key)
            batch = self._scheduler.take(key)
            # The I/O thread issues tasks after every message it receives. It is woken only when
            # this call gave it something to do now: a new epoch, or a producer with a free credit
            # for ``key`` or for the room taking a batch made. When every credit is in use (the
            # feed is the bottleneck), the next result frees one and issues the next task: waking
            # the thread here would be a second, useless turn of its loop for every batch.
            if moved or self._scheduler.has_free_credit():
                self._wake()
            while batch is None:
                now = time.monotonic()
                if timeout is not None and now - started >= timeout:
                    raise FeedTimeoutError(self._waiting_message(key, now - started))
                if now >= next_log:
                    log.warning("%s", self._waiting_message(key, now - started))
                    next_log = now + self._settings.wait_log_interval
                limit = next_log if timeout is None else min(next_log, started + timeout)
                self._arrived.wait(max(0.0, limit - now))
                self._raise_if_failed()
                floor = self._scheduler.floor
                if key[0] != self._scheduler.epoch or key < floor:  # moved by another thread
                    raise ZerofeedError(
                        f"the feed was moved to batch {floor[1]} of epoch {floor[0]} while batch "
                        f"{key[1]} of epoch {key[0]} was awaited"
                    )
                batch = self._scheduler.take(key)
            self.wait_seconds += time.monotonic() - started
        return batch

    def counters(self) -> TransportCounters:
        """A consistent snapshot of the counters (taken under the lock, nothing called out)."""
        with self._lock:
            counters = self._scheduler.counters
            return TransportCounters(
                wait_seconds=self.wait_seconds,
                producers_connected=len(self._scheduler.producers),
                producer_seconds=self._scheduler.producer_seconds(time.monotonic()),
                tasks_issued=counters.tasks_issued,
                tasks_reissued=counters.tasks_reissued,
                producers_lost=counters.producers_lost,
                messages_rejected=sum(self.rejected.values()),
                connections_refused=self.handshakes_failed,
                peak_outstanding=counters.peak_outstanding,
                tasks_overdue=counters.tasks_overdue,
                results_duplicate=counters.results_duplicate,
                producers_refused=sum(
                    p.refused is not None for p in self._scheduler.producers.values()
                ),
                slots_quarantined=self._scheduler.slots_quarantined,
                batches_in_shared_memory=counters.results_in_slots,
            )

    def fail(self, error: ZerofeedError) -> None:
        """Fail every wait, now and later, with ``error`` (e.g. the local producers exited)."""
        with self._arrived:
            if self._failure is None:
                self._failure, self._failure_is_own = error, True
            self._arrived.notify_all()

    def set_status_source(self, source: Callable[[], dict[str, Any]]) -> None:
        """What ``zerofeed status`` is told (called on the I/O thread, without the lock held)."""
        self._status_source = source

    def producer_table(self) -> list[dict[str, Any]]:
        """The connected producers and the tasks each holds."""
        with self._lock:
            return [
                {
                    "name": p.name,
                    "tasks": len(p.tasks),
                    "capacity": p.capacity,
                    "decoder": p.decoder,
                }
                for p in self._scheduler.producers.values()
            ]

    def set_hint(self, hint: str) -> None:
        """What the "no producer connected" message suggests doing."""
        self._hint = hint

    def move_to(self, epoch: int, batch: int = 0) -> None:
        """Serve from batch ``batch`` of ``epoch`` on, dropping what comes before. A :meth:`get`
        waiting on another thread for a batch that is no longer served fails at once."""
        with self._arrived:
            self._scheduler.move_to((epoch, batch))
            self._arrived.notify_all()
        self._wake()

    def advance(self, epoch: int) -> None:
        """Move forward to the start of ``epoch``; nothing when already there or past it. A
        :meth:`get` waiting on another thread for an earlier batch fails at once."""
        with self._arrived:
            if epoch <= self._scheduler.epoch:
                return
            self._scheduler.move_to((epoch, 0))
            self._arrived.notify_all()
        self._wake()

    def close(self) -> None:
        """Stop the I/O thread and close the socket and context (idempotent)."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        self._wake()
        self._thread.join(timeout=10)
        for fd in (self._wake_read, self._wake_write):
            os.close(fd)
        self._socket.disable_monitor()
        self._monitor.close(linger=0)
        if self._auth is not None:
            self._auth.close()
        self._socket.close(linger=0)
        self._context.term()

    def _waiting_message(self, key: Key, waited: float) -> str:
        producers = len(self._scheduler.producers)
        epoch, batch = key
        if producers == 0:
            return (
                f"waited {waited:.0f} s for batch {batch} of epoch {epoch}: no producer is connected "
                f"to {self.endpoint}. {self._hint}"
            )
        if not any(p.capable for p in self._scheduler.producers.values()):
            lacks = next(iter(self._scheduler.producers.values())).lacks
            return (
                f"waited {waited:.0f} s for batch {batch} of epoch {epoch}: {producers} producer "
                f"worker(s) are connected to {self.endpoint}, but none can make it: they lack "
                f"{lacks}"
            )
        message = (
            f"waited {waited:.0f} s for batch {batch} of epoch {epoch} from {producers} producer "
            f"worker(s) at {self.endpoint}"
        )
        refused = [p for p in self._scheduler.producers.values() if p.refused is not None]
        if refused:
            message += (
                f"; {len(refused)} of them get no tasks ({refused[0].name}: {refused[0].refused})"
            )
        if self.rejected:
            kinds = ", ".join(f"{count} {kind}" for kind, count in self.rejected.most_common())
            message += f"; messages rejected so far: {kinds} (the last: {self._last_rejection})"
        return message

    def _raise_if_failed(self) -> None:
        if self._failure is not None and self._failure_is_own:
            raise self._failure
        if self._failure is not None:
            raise ZerofeedError(
                f"the zerofeed I/O thread failed: {self._failure!r}"
            ) from self._failure
        if self._closing:
            raise ZerofeedError("the FeedSequence was closed while waiting for a batch")

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full pipe: already signalled; closed: closing
            os.write(self._wake_write, b"\0")

    # -- the I/O thread --------------------------------------------------------------------------

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(self._wake_read, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        if self._auth is not None:
            poller.register(self._auth.socket, zmq.POLLIN)
        deadline: float | None = None  # nothing is due before the first producer says HELLO
        try:
            while not self._closing:
                events = dict(poller.poll(self._poll_timeout_ms(deadline)))
                if self._wake_read in events:
                    os.read(self._wake_read, 4096)
                if self._socket in events:
                    self._receive_burst()
                if self._monitor in events:
                    self._on_socket_events()
                if self._auth is not None and self._auth.socket in events:
                    self._auth.handle_pending()
                deadline = self._maintain()
        except BaseException as exc:  # surfaced to the training thread by get()
            if not self._closing:
                log.exception("zerofeed I/O thread failed")
                with self._arrived:
                    self._failure = exc
                    self._arrived.notify_all()

    def _poll_timeout_ms(self, deadline: float | None) -> int:
        """How long the I/O thread may sleep with nothing arriving: until ``deadline`` (the
        scheduler's next, from :meth:`_maintain`), and at most one heartbeat interval (what
        changes with no message, a quarantined slot's owner exiting, is seen within that). An
        idle feed then wakes only for its producers' heartbeats, not on a fixed tick: each wake
        costs the trainer's process CPU."""
        wait = self._settings.heartbeat_interval
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - time.monotonic()))
        return math.ceil(wait * 1000) + 1  # + 1: wake after the deadline, never just before

    def _receive_burst(self) -> None:
        for _ in range(_RECV_BURST):
            if not int(self._socket.get(zmq.EVENTS)) & zmq.POLLIN:
                return  # cheaper than the zmq.Again a receive would raise
            try:
                identity, *frames = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            except ValueError:
                continue  # a message with no frames after the identity; nothing to answer
            self._handle(identity.bytes, frames)

    def _handle(self, identity: bytes, frames: list[zmq.Frame]) -> None:
        try:
            message = decode(frames)
        except VersionMismatch as exc:  # say which version this consumer speaks
            reply = Incompatible(speaks=PROTOCOL_VERSION, reason=str(exc))
            self._send(identity, encode(reply))
            self._reject(identity, "version", exc)
            return
        except ProtocolError as exc:
            with self._lock:  # a producer's malformed message is a strike too
                refused = self._scheduler.strike(identity, str(exc))
            self._reject(identity, "malformed", exc)
            if refused is not None:
                self._log_refused(refused)
            return
        now = time.monotonic()
        if isinstance(message, StatusRequest):
            self._send(identity, encode(Status(state=self._status_source())))
            return
        if isinstance(message, Hello):
            self._on_hello(identity, message, now, _connection_of(frames[0]))
            return
        with self._lock:
            known = self._scheduler.heard_from(identity, now)
        if not known:
            if not isinstance(message, Bye):
                # Quiet if it fails: a peer this consumer does not know that is gone already
                # (a producer's last heartbeat after its BYE) is nothing to warn about.
                self._send(identity, encode(Unknown()), warn=False)
            if isinstance(message, Result):
                self._reject(
                    identity, "unknown_sender", ProtocolError("result from an unknown sender")
                )
            return
        if isinstance(message, Heartbeat):
            # A producer that sent its last heartbeat as it left cannot take the echo; its
            # lease says whether it is lost, so that is nothing to warn about.
            self._send(identity, encode(Heartbeat()), warn=False)
        elif isinstance(message, Result):
            self._on_result(identity, message)
        elif isinstance(message, Bye):
            with self._lock:
                producer = self._scheduler.goodbye(identity, message.returned, now=now)
                self._arrived.notify_all()
            if producer is not None:
                log.info(
                    "producer %s left (%d connected)", producer.name, len(self._scheduler.producers)
                )
        else:
            self._reject(
                identity,
                "wrong_direction",
                ProtocolError(f"{type(message).__name__} is sent by consumers, not producers"),
            )

    def _on_socket_events(self) -> None:
        """A connection closed (a producer process died or left): its producers are lost now,
        without waiting for their lease to run out. A handshake failed: a refusal, logged."""
        while True:
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            if event["event"] & _HANDSHAKE_FAILED:
                self._on_failed_handshake(event)
                continue
            with self._lock:
                lost = self._scheduler.disconnected(int(event["value"]))
                if lost:
                    self._arrived.notify_all()
            for producer in lost:
                log.warning(
                    "producer %s disconnected; %d task(s) re-issued to others",
                    producer.name,
                    len(producer.tasks),
                )

    def _on_failed_handshake(self, event: Mapping[str, Any]) -> None:
        self.handshakes_failed += 1
        if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            return  # the authenticator has logged it, with the key it refused
        if self.handshakes_failed <= _LOGGED_REJECTIONS_PER_SENDER * 4:
            secure = "CURVE" if self._settings.curve else "no encryption"
            log.warning(
                "a connection to %s failed its handshake (%s; this consumer expects %s): a "
                "producer without the right keys (--server-key, --secret-key), or not a "
                "zerofeed producer at all",
                self.endpoint,
                zmq.Event(event["event"]).name,
                secure,
            )

    def _on_hello(self, identity: bytes, hello: Hello, now: float, connection: int | None) -> None:
        with self._lock:
            producer = self._scheduler.hello(identity, hello, now, connection=connection)
            connected = len(self._scheduler.producers)
        self._send(
            identity,
            encode(
                Welcome(session=self.session, heartbeat_interval=self._settings.heartbeat_interval)
            ),
        )
        log.info("producer %s connected (%d connected)", producer.name, connected)
        if not producer.capable:
            log.warning("producer %s gets no tasks: it lacks %s", producer.name, producer.lacks)

    def _on_result(self, identity: bytes, result: Result) -> None:
        error: ProtocolError | None = None
        refused: ProducerInfo | None = None
        with self._arrived:
            try:
                batch = self._scheduler.result(identity, result)
            except ProtocolError as exc:
                error = exc
                if isinstance(exc, ResultMismatch):
                    refused = self._scheduler.strike(identity, str(exc))
            else:
                # Waiters are woken at the end of this turn, after the credit this result freed
                # has been given a new task (see _maintain).
                self._news = self._news or batch is not None
        if error is not None:
            self._reject(identity, "result", error)
        if refused is not None:
            self._log_refused(refused)

    def _log_refused(self, producer: ProducerInfo) -> None:
        log.error(
            "producer %s gets no more tasks: %s. Its tasks went to other producers; fix or "
            "upgrade it and start it again under another name",
            producer.name,
            producer.refused,
        )

    def _reject(self, identity: bytes, kind: str, error: Exception) -> None:
        with self._lock:  # read by counters() and wait messages on other threads
            self.rejected[kind] += 1
            self._last_rejection = f"{kind}: {error}"
        # Bounded, so that a peer reconnecting under ever new identities cannot grow it.
        seen = self._rejected_by_sender.pop(identity, 0) + 1
        self._rejected_by_sender[identity] = seen
        if len(self._rejected_by_sender) > _TRACKED_SENDERS:
            self._rejected_by_sender.popitem(last=False)
        if seen <= _LOGGED_REJECTIONS_PER_SENDER:
            log.warning("rejected a message from peer %s: %s", identity.hex(), error)

    def _maintain(self) -> float | None:
        """Expire silent producers, re-issue overdue tasks, issue new ones; the next moment
        something falls due (:meth:`Scheduler.next_deadline`), found under the same lock."""
        now = time.monotonic()
        with self._lock:
            self._scheduler.reclaim_slots()
            lost = self._scheduler.expire(now)
            overdue = self._scheduler.overdue(now)
            bound = self._scheduler.task_bound()
            names = {i: p.name for i, p in self._scheduler.producers.items()} if overdue else {}
            leases = self._scheduler.assign(now)
            # After assign(): a woken get() then finds every free credit used, and does not wake
            # this thread again for nothing. Lost or overdue: a split batch may be complete now.
            # And assign() itself readies a batch of only stalled samples, with no result.
            if self._news or lost or overdue or self._scheduler.awaited_ready():
                self._news = False
                self._arrived.notify_all()
            deadline = self._scheduler.next_deadline(now)
        for producer in lost:
            log.warning(
                "producer %s silent for more than its lease; %d task(s) re-issued to others",
                producer.name,
                len(producer.tasks),
            )
        for lease in overdue:
            log.warning(
                "batch %d of epoch %d is overdue at producer %s (out for over %.0f s); issued to "
                "another producer as well, the first valid result wins",
                lease.key[1],
                lease.key[0],
                names.get(lease.producer, lease.producer.hex()),
                bound,
            )
        for lease in leases:
            task = self._recipe.task(
                task_id=lease.task_id,
                epoch=lease.key[0],
                batch=lease.key[1],
                rows=lease.rows,
                slot=lease.slot,
            )
            if not self._send(lease.producer, encode(task)):
                with self._lock:
                    self._scheduler.lose(lease.producer)
        return deadline

    def _send(self, identity: bytes, frames: list[Any], *, warn: bool = True) -> bool:
        try:
            self._socket.send_multipart([identity, *frames], zmq.NOBLOCK)
            return True
        except zmq.ZMQError as exc:  # EHOSTUNREACH (gone, ROUTER_MANDATORY) or EAGAIN (not reading)
            if warn:
                log.warning("cannot reach producer %s: %s", identity.hex(), exc.strerror)
            return False


def _connection_of(frame: zmq.Frame) -> int | None:
    """The file descriptor of the connection a message came in on (matches monitor events)."""
    try:
        return int(frame.get(zmq.SRCFD))
    except (zmq.ZMQError, AttributeError, TypeError):
        return None

"""Why no consumer answers: a producer connection's ZeroMQ socket monitor, told in words.

A DEALER socket hides its link: a trainer that is not running, a CURVE trainer reached without
keys, a wrong ``--server-key``, a key the trainer does not authorise all look the same from
``send``/``recv`` — silence. :class:`LinkWatch` reads the socket's monitor events (TCP connected or
retried, handshake succeeded or failed and why) and logs what went wrong:

- a failed handshake at once, with what to fix (a warning per distinct cause and connection);
- a connection that got no ``WELCOME`` within ``warn_after`` seconds once, with what it saw of
  the link (nothing listening, a handshake that failed, or a peer that accepted but never answers).

The monitor socket is the connection's own and is read only by the thread that owns the
connection (one owner per socket).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

import zmq
from zmq.utils.monitor import recv_monitor_message

__all__ = ["LinkWatch"]

log = logging.getLogger("zerofeed.producer")

_EVENTS = (
    zmq.EVENT_CONNECTED
    | zmq.EVENT_CONNECT_RETRIED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)
_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


@dataclass
class _Seen:
    """What the monitor has reported on this connection so far."""

    connected: bool = False  # the transport (TCP, IPC) connected at least once
    retried: bool = False  # a connect attempt failed (nothing listening, unreachable)
    handshake_ok: bool = False
    handshake_failure: str | None = None  # the latest failed handshake, in words


class LinkWatch:
    """Reads ``socket``'s monitor events; logs why a consumer at ``endpoint`` does not answer.

    Args:
        socket: the connection's DEALER socket, before ``connect``.
        endpoint: the consumer's address, for the messages.
        name: the worker's name, for the messages.
        curve: whether this producer uses CURVE (``--server-key``/``--secret-key``).
        warn_after: seconds without a ``WELCOME`` before saying so.
    """

    def __init__(
        self, socket: zmq.Socket, *, endpoint: str, name: str, curve: bool, warn_after: float
    ) -> None:
        self._socket = socket
        self._monitor = socket.get_monitor_socket(_EVENTS)
        self._endpoint = endpoint
        self._name = name
        self._curve = curve
        self._warn_at = time.monotonic() + warn_after
        self._started = time.monotonic()
        self._seen = _Seen()
        self._told: set[str] = set()
        self._warned_silence = False

    def check(self, *, welcomed: bool) -> None:
        """Read the events that arrived (never blocks); log what is new and worth saying."""
        while True:
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                break
            self._note(int(event["event"]), int(event["value"]))
        if welcomed or self._warned_silence or time.monotonic() < self._warn_at:
            return
        self._warned_silence = True
        log.warning(
            "%s: no consumer has answered at %s for %.0f s: %s",
            self._name,
            self._endpoint,
            time.monotonic() - self._started,
            self._silence_cause(),
        )

    def close(self) -> None:
        """Stop monitoring and close the monitor socket (before the socket itself is closed)."""
        with contextlib.suppress(zmq.ZMQError):  # the socket was closed already
            self._socket.disable_monitor()
        self._monitor.close(linger=0)

    def _note(self, event: int, value: int) -> None:
        seen = self._seen
        if event == zmq.EVENT_CONNECTED:
            seen.connected = True
        elif event == zmq.EVENT_CONNECT_RETRIED:
            seen.retried = True
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            seen.handshake_ok = True
            seen.handshake_failure = None
        elif event & _HANDSHAKE_FAILED or (
            # Closed before any handshake succeeded, and with no failure event: libzmq reports
            # a mechanism mismatch only on the side that reads the greeting first.
            event == zmq.EVENT_DISCONNECTED
            and not seen.handshake_ok
            and seen.handshake_failure is None
        ):
            failed = event if event & _HANDSHAKE_FAILED else zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
            seen.handshake_failure = self._handshake_failure(failed, value)
            if seen.handshake_failure not in self._told:
                self._told.add(seen.handshake_failure)
                log.warning("%s: %s", self._name, seen.handshake_failure)

    def _handshake_failure(self, event: int, value: int) -> str:
        where = f"the handshake with the consumer at {self._endpoint} failed"
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            return (
                f"{where}: the consumer refused this producer's CURVE key (status {value}); put "
                "this producer's public .key file in the consumer's authorized_keys folder"
            )
        if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
                if self._curve:
                    return (
                        f"{where}: this producer uses CURVE (--server-key/--secret-key) and the "
                        "consumer does not (it has no server_secret_key); use keys on both "
                        "sides or on neither"
                    )
                return (
                    f"{where}: the consumer requires CURVE authentication and encryption and "
                    "this producer has no keys; start it with --server-key (the consumer's "
                    "public .key) and --secret-key (this producer's .key_secret, made with "
                    "`zerofeed keys generate DIR`)"
                )
            return (
                f"{where} (ZeroMQ protocol error {value:#x}); is the process at that address a "
                "zerofeed consumer?"
            )
        if self._curve:
            return (
                f"{where}: the consumer could not read this producer's CURVE hello; is "
                "--server-key the public key of the consumer at that address?"
            )
        return (
            f"{where}: the peer closed the connection during the handshake; if the consumer "
            "requires CURVE, start this producer with --server-key and --secret-key"
        )

    def _silence_cause(self) -> str:
        seen = self._seen
        if seen.handshake_failure is not None and not seen.handshake_ok:
            return seen.handshake_failure
        if seen.handshake_ok:
            return (
                "the connection is up but nothing answered this producer's HELLO; is the process "
                "there a zerofeed consumer (a FeedSequence or Feed) of the same protocol version?"
            )
        if seen.retried or not seen.connected:
            return (
                "nothing accepts connections there yet (connection refused or unreachable); is "
                "the trainer running, and is the address right? Still trying"
            )
        return "connected, but the handshake has not completed; still trying"

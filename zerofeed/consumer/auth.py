"""Which producers may connect: a ZAP handler for CurveZMQ, run by the consumer's I/O thread.

ZeroMQ asks the handler (over ``inproc://zeromq.zap.01``, in the socket's context) about every new
CURVE connection; only clients whose public key is in the authorized folder are let in. A refused
client never completes its handshake, so it can neither receive a task nor deliver a batch. Keys
added to the folder later are picked up without a restart.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import zmq
import zmq.utils.z85

from zerofeed.common.curve import load_authorized

__all__ = ["CurveAuthenticator"]

log = logging.getLogger("zerofeed.consumer")

_ZAP_ENDPOINT = "inproc://zeromq.zap.01"
_RESCAN_SECONDS = 1.0


class CurveAuthenticator:
    """Answers ZAP requests from the keys in ``authorized``; counts and logs refusals."""

    def __init__(
        self, context: zmq.Context, authorized: Path, extra: frozenset[bytes] = frozenset()
    ) -> None:
        self._folder = authorized
        self._extra = extra
        self._keys = load_authorized(authorized) | extra
        self._scanned = time.monotonic()
        self.refused = 0
        self.socket = context.socket(zmq.REP)
        self.socket.linger = 0
        self.socket.bind(_ZAP_ENDPOINT)

    def handle_pending(self) -> None:
        """Answer every ZAP request waiting on the socket (never blocks)."""
        while True:
            try:
                request = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.socket.send_multipart(self._answer(request))

    def close(self) -> None:
        self.socket.close(linger=0)

    def _answer(self, request: list[bytes]) -> list[bytes]:
        if len(request) < 6:
            return [b"1.0", b"", b"500", b"malformed ZAP request", b"", b""]
        version, request_id, _domain, address, _identity, mechanism = request[:6]
        credentials = request[6:]
        if mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != 32:
            return self._refuse(version, request_id, address, "no CURVE key (plain connection)")
        key = zmq.utils.z85.encode(credentials[0])
        if not self._authorized(key):
            return self._refuse(version, request_id, address, f"key {key.decode()} not authorized")
        return [version, request_id, b"200", b"OK", key, b""]

    def _authorized(self, key: bytes) -> bool:
        if key in self._keys:
            return True
        if time.monotonic() - self._scanned >= _RESCAN_SECONDS:
            self._keys = load_authorized(self._folder) | self._extra
            self._scanned = time.monotonic()
        return key in self._keys

    def _refuse(self, version: bytes, request_id: bytes, address: bytes, why: str) -> list[bytes]:
        self.refused += 1
        log.warning(
            "refused a producer connection from %s: %s (authorized keys: %s)",
            address.decode(errors="replace") or "?",
            why,
            self._folder,
        )
        return [version, request_id, b"400", why.encode(), b"", b""]

"""Where the consumer binds, and the address a producer on this machine connects to."""

from __future__ import annotations

import ipaddress
import logging
import os
import re

from zerofeed.common.errors import ConfigError

__all__ = ["connect_address", "private_endpoint", "validate_bind", "warn_if_exposed"]

log = logging.getLogger("zerofeed.consumer")

_TCP = re.compile(r"^tcp://(?P<host>\[[^\]]+\]|[^:/]+):(?P<port>\*|\d+)$")
_WILDCARD_HOSTS = ("0.0.0.0", "*", "[::]")


def private_endpoint(folder: str) -> str:
    """An ipc endpoint inside ``folder`` (a fresh 0700 temp folder: nothing on the network)."""
    return f"ipc://{os.path.join(folder, 'feed.sock')}"


def validate_bind(bind: str) -> str:
    """Check a user's ``bind`` address; port 0 becomes ``*`` (ZeroMQ's "pick a free port")."""
    if bind.startswith(("ipc://", "inproc://")):
        return bind
    match = _TCP.match(bind)
    if match is None:
        raise ConfigError(
            f"bind {bind!r} is not an address producers can connect to; expected "
            "tcp://HOST:PORT (e.g. tcp://0.0.0.0:5555, port 0 picks a free one) or ipc:///path"
        )
    port = match["port"]
    if port != "*" and not 0 <= int(port) <= 65535:
        raise ConfigError(f"bind {bind!r} has port {port}; expected 0-65535")
    return f"tcp://{match['host']}:{'*' if port in ('*', '0') else port}"


def connect_address(endpoint: str) -> str:
    """The address a producer on this machine uses for a bound ``endpoint``."""
    match = _TCP.match(endpoint)
    if match is None or match["host"] not in _WILDCARD_HOSTS:
        return endpoint
    host = "[::1]" if match["host"] == "[::]" else "127.0.0.1"
    return f"tcp://{host}:{match['port']}"


def warn_if_exposed(endpoint: str, *, encrypted: bool) -> None:
    """Log a prominent warning when a plain-text endpoint listens beyond this machine."""
    match = _TCP.match(endpoint)
    if encrypted or match is None or _is_loopback(match["host"]):
        return
    log.warning(
        "zerofeed is listening on %s WITHOUT authentication or encryption: anyone who can reach "
        "this port can send batches to your model and read what is sent. Turn on CURVE: "
        "`zerofeed keys generate keys/trainer`, `zerofeed keys generate keys/producer`, copy "
        "keys/producer/zerofeed.key into keys/authorized/, then FeedSequence(..., "
        "server_secret_key='keys/trainer/zerofeed.key_secret', authorized_keys='keys/authorized')"
        " and `zerofeed producer --server-key keys/trainer/zerofeed.key --secret-key "
        "keys/producer/zerofeed.key_secret ...` (the layout docker-compose.curve.yml uses; see "
        "docs/security.md).",
        endpoint,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name or interface name: assume it is reachable

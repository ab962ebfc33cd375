"""Container health check for the zerofeed images (Docker HEALTHCHECK; standard library only).

    python3 healthcheck.py producer   # a `zerofeed producer` runs, connected to ZEROFEED_CONNECT
    python3 healthcheck.py trainer    # something listens on ZEROFEED_BIND's TCP port

Both read the kernel's socket table (/proc/net/tcp*) instead of connecting: a probe connection
would show in the trainer's log and stats as a failed handshake. Exit 0 healthy, 1 not.
"""

from __future__ import annotations

import itertools
import os
import sys
from urllib.parse import urlsplit

_ESTABLISHED, _LISTEN = "01", "0A"


def tcp_sockets() -> list[tuple[int, int, str]]:
    """(local port, remote port, state) of every TCP socket in this network namespace."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, remote, state = fields[1], fields[2], fields[3]
            found.append(
                (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16), state)
            )
    return found


def producer_running() -> bool:
    """Is a `zerofeed producer` (or `python -m zerofeed.producer`) process alive here?"""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        pairs = itertools.pairwise(argv)
        if any(a.endswith(b"zerofeed") and b == b"producer" for a, b in pairs):
            return True
        if b"zerofeed.producer" in argv:
            return True
    return False


def tcp_port(endpoint: str) -> int | None:
    """The port of a ``tcp://host:port`` endpoint; None for ipc:// and the like."""
    parts = urlsplit(endpoint)
    return parts.port if parts.scheme == "tcp" else None


def main(role: str) -> str | None:
    """None when healthy, else why not."""
    if role == "producer":
        if not producer_running():
            return "no zerofeed producer process is running"
        port = tcp_port(os.environ.get("ZEROFEED_CONNECT", ""))
        if port and not any(r == port and s == _ESTABLISHED for _, r, s in tcp_sockets()):
            return f"not connected to {os.environ['ZEROFEED_CONNECT']} (is the trainer up?)"
        return None
    if role == "trainer":
        port = tcp_port(os.environ.get("ZEROFEED_BIND", "tcp://0.0.0.0:5555"))
        if port and not any(p == port and s == _LISTEN for p, _, s in tcp_sockets()):
            return f"nothing listens on port {port} yet"
        return None
    return f"usage: healthcheck.py producer|trainer (got {role!r})"


if __name__ == "__main__":
    problem = main(sys.argv[1] if len(sys.argv) > 1 else "")
    if problem:
        print(problem)
    sys.exit(1 if problem else 0)

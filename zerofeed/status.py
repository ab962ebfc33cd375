"""``zerofeed status ENDPOINT``: the live state of a running consumer, in the terminal.

It asks the consumer over its own socket (a ``status_request`` message; see docs/protocol.md), so
it works wherever a producer could connect, with the same CURVE keys where those are required.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import zmq

from zerofeed.common.curve import load_public, load_secret
from zerofeed.common.errors import ProtocolError
from zerofeed.common.protocol import Status, StatusRequest, decode, encode

__all__ = ["ask", "format_status", "main"]


def ask(
    endpoint: str,
    *,
    timeout: float = 5.0,
    server_key: Path | None = None,
    secret_key: Path | None = None,
) -> dict[str, Any]:
    """The consumer's state; raises TimeoutError when it does not answer in ``timeout`` s."""
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.linger = 0
    if server_key is not None and secret_key is not None:
        keys = load_secret(secret_key)
        socket.curve_serverkey = load_public(server_key)
        socket.curve_publickey, socket.curve_secretkey = keys.public, keys.secret
    try:
        socket.connect(endpoint)
        socket.send_multipart(encode(StatusRequest()))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not socket.poll(int(left * 1000) + 1):
                break
            try:
                message = decode(socket.recv_multipart())
            except ProtocolError:
                continue
            if isinstance(message, Status):
                return message.state
        raise TimeoutError(
            f"no answer from a zerofeed consumer at {endpoint} within {timeout:g} s: is a "
            "FeedSequence bound there, and (with CURVE) are --server-key/--secret-key right?"
        )
    finally:
        socket.close(linger=0)
        context.term()


def format_status(state: Mapping[str, Any]) -> str:
    """A few human lines for ``state``."""
    rate, wait = state.get("recent_images_per_s"), state.get("recent_wait_share")
    lines = [
        f"consumer {state.get('endpoint')}  epoch {state.get('epoch')}  "
        f"up {state.get('uptime_s', 0):.0f} s",
        f"delivered {state.get('images_delivered')} images"
        + (
            f"; now {rate:,.0f} images/s, {100 * wait:.0f} % of the time waiting for data"
            if rate is not None and wait is not None
            else ""
        ),
        f"re-issued {state.get('tasks_reissued')} tasks, lost {state.get('producers_lost')} "
        f"producers, rejected {state.get('messages_rejected')} messages, refused "
        f"{state.get('connections_refused')} connections, skipped "
        f"{state.get('samples_skipped')} samples",
    ]
    slots = state.get("shared_memory")
    if isinstance(slots, Mapping):
        lines.append(
            f"shared memory: {slots.get('slots')} batch slots ({slots.get('bytes', 0) / 2**20:.0f} "
            f"MiB), {slots.get('free')} free, {slots.get('quarantined')} quarantined"
        )
    producers = state.get("producers") or []
    lines.append(f"{len(producers)} producer worker(s):")
    lines += [
        f"  {p['name']:<40} {p['tasks']}/{p['capacity']} tasks"
        + (f"  decode: {p['decoder']}" if p.get("decoder") else "")
        for p in producers
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``zerofeed status ENDPOINT [--watch S] [--json]``."""
    parser = argparse.ArgumentParser(prog="zerofeed status", description=__doc__.splitlines()[0])
    parser.add_argument("endpoint", help="the consumer's address, e.g. tcp://trainer:5555")
    parser.add_argument("--watch", type=float, metavar="SECONDS", help="repeat every SECONDS")
    parser.add_argument("--json", action="store_true", help="print the raw state as JSON")
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--server-key", type=Path, help="the consumer's public CURVE key file")
    parser.add_argument("--secret-key", type=Path, help="an authorized .key_secret file")
    args = parser.parse_args(argv)
    while True:
        try:
            state = ask(
                args.endpoint,
                timeout=args.timeout,
                server_key=args.server_key,
                secret_key=args.secret_key,
            )
        except TimeoutError as exc:
            sys.stderr.write(f"zerofeed status: {exc}\n")
            return 1
        sys.stdout.write((json.dumps(state) if args.json else format_status(state)) + "\n")
        sys.stdout.flush()
        if not args.watch:
            return 0
        time.sleep(args.watch)

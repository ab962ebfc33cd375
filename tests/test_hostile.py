"""Hostile or broken messages on a real socket: rejected, counted, and the feed keeps serving."""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from tests.conftest import ID_SIZE, ids_of
from zerofeed.common.protocol import Hello, Result, encode
from zerofeed.consumer import FeedSequence

pytestmark = pytest.mark.usefixtures("no_leftover_processes")


def header(**fields: object) -> bytes:
    return msgpack.packb({"v": 1, **fields})


HOSTILE: list[list[bytes]] = [
    [b"\x00\xff garbage"],
    [b""],
    [header(t="result")],  # truncated: no data frame, no fields
    [header(t="hello", producer="x", credits=1, transforms=[]), b"extra frame"],
    [msgpack.packb({"v": 99, "t": "hello"})],
    [header(t="launch_missiles")],
    [
        header(
            t="task",
            id=1,
            epoch=0,
            batch=0,
            seed=0,
            size=[1, 1],
            dtype="uint8",
            augment={},
            samples=[[0, "/etc/passwd"]],
        )
    ],  # consumer-only message from a producer
    [header(t="result", id=10**6, count=1, skipped=[]), b"\0" * 300],  # never issued
    [header(t="result", id=1, count=2**40, skipped=[]), b""],  # absurd count
    [header(t="hello", producer="x" * 10**6, credits=1, transforms=[])],  # too long
    [msgpack.packb([1, 2, 3])],
]


@pytest.fixture
def peer(fed: FeedSequence) -> Iterator[zmq.Socket]:
    """A raw DEALER socket connected to the feed: an attacker, or a producer that lies."""
    context = zmq.Context()
    socket_ = context.socket(zmq.DEALER)
    socket_.linger = 0
    socket_.connect(fed.endpoint)
    try:
        yield socket_
    finally:
        socket_.close(linger=0)
        context.term()


@pytest.fixture
def fed(id_dataset: Path) -> Iterator[FeedSequence]:
    with FeedSequence(
        id_dataset,
        batch_size=10,
        image_size=ID_SIZE,
        seed=0,
        local_producers=1,
        bind="tcp://127.0.0.1:0",
        timeout=60,
    ) as seq:
        yield seq


def test_hostile_messages_are_rejected_and_the_feed_keeps_serving(
    fed: FeedSequence, peer: zmq.Socket
) -> None:
    rows = ids_of(fed[0][0])
    for frames in HOSTILE:
        peer.send_multipart(frames)
    # Pretend to be a producer, then send results that do not match any lease.
    peer.send_multipart(encode(Hello(producer="mallory", credits=1)))
    assert peer.poll(30_000), "the consumer did not answer HELLO"
    peer.recv_multipart()
    peer.send_multipart(encode(Result(task_id=424242, count=1, images=b"\0" * 300)))
    rows += [r for i in range(1, len(fed)) for r in ids_of(fed[i][0])]
    assert Counter(rows) == Counter(range(100))
    while fed.stats.messages_rejected < len(HOSTILE) - 1:  # the empty frame is not a message
        fed[0]  # keeps serving meanwhile; the I/O thread processes the backlog


def test_lying_producer_cannot_deliver_mismatched_batches(
    fed: FeedSequence, peer: zmq.Socket
) -> None:
    """A producer that answers its tasks with wrong sizes is refused and its tasks re-done."""
    peer.send_multipart(encode(Hello(producer="liar", credits=2)))
    lies = 0
    rows = []
    for i in range(len(fed)):
        while peer.poll(0):
            frames = peer.recv_multipart()
            message = msgpack.unpackb(frames[0])
            if message.get("t") == "task":
                count = len(message["samples"])
                peer.send_multipart(
                    encode(Result(task_id=message["id"], count=count, images=b"\1" * (count * 7)))
                )
                lies += 1
        rows += ids_of(fed[i][0])
    assert Counter(rows) == Counter(range(100))
    assert fed.stats.messages_rejected >= lies


def test_oversized_message_is_cut_off_by_the_socket(fed: FeedSequence, peer: zmq.Socket) -> None:
    big = np.zeros(20 * 1024 * 1024, np.uint8)  # far above one batch's size
    peer.send_multipart([header(t="heartbeat"), big])
    rows = [r for i in range(len(fed)) for r in ids_of(fed[i][0])]
    assert Counter(rows) == Counter(range(100))


def test_raw_tcp_garbage_does_not_disturb_the_feed(fed: FeedSequence) -> None:
    host, port = fed.endpoint.removeprefix("tcp://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(np.random.default_rng(0).bytes(65536))
    rows = [r for i in range(len(fed)) for r in ids_of(fed[i][0])]
    assert Counter(rows) == Counter(range(100))


def test_a_flood_of_hostile_messages_leaves_memory_flat(fed: FeedSequence) -> None:
    """Thousands of junk messages, each from a fresh identity: nothing accumulates."""
    import psutil

    this = psutil.Process()
    fed[0]
    baseline = this.memory_info().rss
    context = zmq.Context()
    try:
        rng = np.random.default_rng(1)
        for round_ in range(40):
            junk = context.socket(zmq.DEALER)
            junk.linger = 0
            junk.connect(fed.endpoint)
            for _ in range(100):
                junk.send_multipart([rng.bytes(int(rng.integers(1, 2000)))])
            junk.send_multipart([header(t="result", id=round_, count=1, skipped=[]), b"\0" * 4096])
            junk.close(linger=200)
        deadline = time.monotonic() + 60
        while fed.stats.messages_rejected < 40 * 101 and time.monotonic() < deadline:
            fed[0]  # still serving while it works through the backlog
        assert fed.stats.messages_rejected >= 40 * 101 * 0.9, "junk was not seen and refused"
    finally:
        context.term()
    rows = [r for i in range(len(fed)) for r in ids_of(fed[i][0])]
    assert Counter(rows) == Counter(range(100))
    grown = this.memory_info().rss - baseline
    assert grown < 32 * 1024 * 1024, f"consumer grew by {grown / 2**20:.1f} MiB"

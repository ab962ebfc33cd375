"""The zerofeed wire protocol, version 1 (specified in ``docs/protocol.md``).

A message is a ZeroMQ multipart message: one msgpack header frame, then raw array frames (only
``RESULT`` has one). Producers talk through a ``DEALER`` socket, the consumer through a ``ROUTER``
(which prepends the sender's identity frame; that frame is not part of what is decoded here).

Every header is a map with ``"v"`` (the protocol version) and ``"t"`` (the message type). Decoding
validates everything before anything is used: types, ranges, sizes. No pickle, no code on the wire.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from zerofeed.common.errors import ProtocolError

__all__ = [
    "DTYPES",
    "MAX_HEADER_BYTES",
    "MAX_REASON_CHARS",
    "MAX_SLOTS",
    "PROTOCOL_VERSION",
    "Bye",
    "Heartbeat",
    "Hello",
    "Incompatible",
    "Message",
    "Result",
    "Skipped",
    "Status",
    "StatusRequest",
    "Task",
    "Unknown",
    "VersionMismatch",
    "Welcome",
    "brief",
    "decode",
    "encode",
]

PROTOCOL_VERSION = 1
MAX_HEADER_BYTES = 4 << 20
DTYPES = ("uint8", "float32")
_MAX_TEXT = 4096
_MAX_PATH = 65536  # longer than any path a filesystem takes: a producer reports such a path bad
MAX_REASON_CHARS = 1024
"""Producers cut a bad sample's reason to this many characters (:func:`brief`), well under the
4096 a message may carry: a long exception message never costs the whole result."""
_MAX_SAMPLES = 65536
_MAX_SIDE = 16384
_MAX_ID = 2**63 - 1
MAX_SLOTS = 1024


@dataclass(frozen=True, kw_only=True)
class Hello:
    """Producer → consumer: a worker (re)announces itself and how many tasks it can hold."""

    producer: str
    credits: int
    transforms: tuple[str, ...] = ()
    slots: str = ""  # the consumer's shared-memory slot file this worker has mapped, if any
    pid: int | None = None  # its process id, sent with ``slots`` (same machine, same namespace)
    reads: tuple[str, ...] = ()  # object URL prefixes it may read (``--allow``); local files always
    decoder: str = ""  # how it decodes and resizes ("accelerated ...", or "portable ...: why")


@dataclass(frozen=True, kw_only=True)
class Welcome:
    """Consumer → producer: the answer to ``HELLO``; ``session`` changes when the consumer restarts."""

    session: str
    heartbeat_interval: float


@dataclass(frozen=True, kw_only=True)
class Heartbeat:
    """Either way: I am alive. From a producer it also renews the leases of its tasks."""


@dataclass(frozen=True, kw_only=True)
class Unknown:
    """Consumer → producer: I do not know you (I restarted, or declared you lost); say ``HELLO``."""


@dataclass(frozen=True, kw_only=True)
class Incompatible:
    """Consumer → a peer whose messages it cannot read: the protocol version it speaks, and why.

    The one message every version decodes whatever its ``v``, so that mismatched versions say so
    instead of going quiet."""

    speaks: int
    reason: str


@dataclass(frozen=True, kw_only=True)
class Task:
    """Consumer → producer: make batch ``batch`` of ``epoch`` from ``samples`` (manifest row, path)."""

    task_id: int
    epoch: int
    batch: int
    seed: int
    image_size: tuple[int, int]
    dtype: str
    augment: dict[str, Any]
    samples: tuple[tuple[int, str], ...]
    slot: int | None = None  # write the images into this shared-memory slot, not a frame


def brief(reason: str, limit: int = MAX_REASON_CHARS) -> str:
    """``reason`` cut to ``limit`` characters, saying how much was cut."""
    if len(reason) <= limit:
        return reason
    kept = limit - len(f" ... [{len(reason)} more characters]")  # the note's longest length
    return f"{reason[:kept]} ... [{len(reason) - kept} more characters]"


@dataclass(frozen=True, kw_only=True)
class Skipped:
    """A sample a producer could not make, and why (``reason``: see :func:`brief`)."""

    index: int
    kind: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class Result:
    """Producer → consumer: the images of a task (one raw frame), minus the ``skipped`` samples.

    ``images`` is the raw frame: ``count`` images of the task's size and dtype, in task order, without
    the skipped ones. On encode it is any buffer; on decode, what the socket gave (a zero-copy buffer).
    With ``slot`` (the task's own) the images are in that shared-memory slot instead, and the message
    has no frame.
    """

    task_id: int
    count: int
    skipped: tuple[Skipped, ...] = ()
    images: Any = field(default=b"", repr=False)
    slot: int | None = None


@dataclass(frozen=True, kw_only=True)
class Bye:
    """Producer → consumer: I am leaving; these task ids will not be done by me."""

    returned: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True)
class StatusRequest:
    """Anyone → consumer (``zerofeed status``): how is the feed doing?"""


@dataclass(frozen=True, kw_only=True)
class Status:
    """Consumer → asker: the feed's live state, a map of plain values (see ``zerofeed status``)."""

    state: dict[str, Any]


Message = (
    Hello
    | Welcome
    | Heartbeat
    | Unknown
    | Incompatible
    | Task
    | Result
    | Bye
    | StatusRequest
    | Status
)


def encode(message: Message) -> list[Any]:
    """The frames of ``message``: a msgpack header, then raw frames (only for ``Result``)."""
    header: dict[str, Any] = {"v": PROTOCOL_VERSION}
    match message:
        case Hello():
            header |= {
                "t": "hello",
                "producer": message.producer,
                "credits": message.credits,
                "transforms": list(message.transforms),
            }
            if message.slots:
                header["slots"] = message.slots
            if message.pid is not None:
                header["pid"] = message.pid
            if message.reads:
                header["reads"] = list(message.reads)
            if message.decoder:
                header["decoder"] = message.decoder
        case Welcome():
            header |= {
                "t": "welcome",
                "session": message.session,
                "heartbeat_interval": message.heartbeat_interval,
            }
        case Heartbeat():
            header["t"] = "heartbeat"
        case Unknown():
            header["t"] = "unknown"
        case Incompatible():
            header |= {"t": "incompatible", "speaks": message.speaks, "reason": message.reason}
        case Task():
            return _task_frames(header, message)
        case Result():
            header |= {
                "t": "result",
                "id": message.task_id,
                "count": message.count,
                "skipped": [[s.index, s.kind, s.reason] for s in message.skipped],
            }
            if message.slot is not None:
                header["slot"] = message.slot
                return [msgpack.packb(header)]
            return [msgpack.packb(header), message.images]
        case StatusRequest():
            header["t"] = "status_request"
        case Status():
            header |= {"t": "status", "state": message.state}
        case Bye():
            header |= {"t": "bye", "returned": list(message.returned)}
    return [msgpack.packb(header)]


def _task_frames(header: dict[str, Any], message: Task) -> list[Any]:
    """A task's frame. Paths go as msgpack strings; a path that is not valid UTF-8 (a file name
    in another encoding, read with ``surrogateescape``) goes as its raw bytes (``os.fsencode``),
    so any name the filesystem allows reaches the producer intact."""
    header |= {
        "t": "task",
        "id": message.task_id,
        "epoch": message.epoch,
        "batch": message.batch,
        "seed": message.seed,
        "size": list(message.image_size),
        "dtype": message.dtype,
        "augment": message.augment,
        "samples": message.samples,  # msgpack writes tuples as arrays
    }
    if message.slot is not None:
        header["slot"] = message.slot
    try:
        return [msgpack.packb(header)]
    except UnicodeEncodeError:  # the rare path that is not UTF-8: only then look at each one
        header["samples"] = [(row, _wire_path(path)) for row, path in message.samples]
        return [msgpack.packb(header)]


def _wire_path(path: str) -> str | bytes:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def decode(frames: Sequence[Any]) -> Message:
    """Validate and decode a message's frames (without the ROUTER identity frame).

    Raises:
        ProtocolError: anything that does not follow the protocol, with what was wrong.
    """
    if not frames:
        raise ProtocolError("empty message: expected a msgpack header frame")
    header = _unpack_header(frames[0])
    kind = header.get("t")
    if not isinstance(kind, str) or kind not in _PARSERS:
        raise ProtocolError(f"unknown message type {kind!r}; expected one of {sorted(_PARSERS)}")
    expected_frames = 2 if kind == "result" and "slot" not in header else 1
    if len(frames) != expected_frames:
        raise ProtocolError(f"a {kind!r} message has {expected_frames} frame(s), got {len(frames)}")
    return _PARSERS[kind](_Fields(kind, header), frames[1:])


def _unpack_header(frame: Any) -> dict[str, Any]:
    raw = memoryview(frame.buffer if hasattr(frame, "buffer") else frame)
    if raw.nbytes > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {raw.nbytes} bytes exceeds the {MAX_HEADER_BYTES}-byte cap")
    try:
        header = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises many types for garbage input
        raise ProtocolError(f"header is not valid msgpack: {type(exc).__name__}: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"header must be a msgpack map, got {type(header).__name__}")
    version = header.get("v")
    if header.get("t") == "incompatible":
        return header  # read whatever its version (see Incompatible)
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise VersionMismatch(
            f"protocol version {version!r} is not supported; this zerofeed speaks version "
            f"{PROTOCOL_VERSION}: run the same zerofeed version on producers and consumer"
        )
    return header


class VersionMismatch(ProtocolError):
    """A message of another protocol version (answered with :class:`Incompatible`)."""


class _Fields:
    """Typed access to a header's fields, raising ProtocolError with the message type and field."""

    def __init__(self, kind: str, header: dict[str, Any]) -> None:
        self.kind = kind
        self.header = header

    def _get(self, name: str) -> Any:
        if name not in self.header:
            raise ProtocolError(f"{self.kind!r} message lacks field {name!r}")
        return self.header[name]

    def _fail(self, name: str, expected: str) -> ProtocolError:
        value = repr(self.header.get(name))[:80]
        return ProtocolError(f"{self.kind!r} field {name!r} must be {expected}, got {value}")

    def integer(self, name: str, *, low: int = 0, high: int = _MAX_ID) -> int:
        value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self._fail(name, f"an integer in [{low}, {high}]")
        return value

    def number(self, name: str, *, low: float, high: float) -> float:
        value = self._get(name)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise self._fail(name, f"a number in [{low}, {high}]")
        return float(value)

    def text(self, name: str) -> str:
        value = self._get(name)
        if not isinstance(value, str) or len(value) > _MAX_TEXT:
            raise self._fail(name, f"a string of at most {_MAX_TEXT} characters")
        return value

    def items(self, name: str, *, limit: int = _MAX_SAMPLES) -> list[Any]:
        value = self._get(name)
        if not isinstance(value, list) or len(value) > limit:
            raise self._fail(name, f"a list of at most {limit} items")
        return value

    def optional_slot(self) -> int | None:
        return self.integer("slot", high=MAX_SLOTS - 1) if "slot" in self.header else None

    def map(self, name: str) -> dict[str, Any]:
        value = self._get(name)
        if not isinstance(value, dict):
            raise self._fail(name, "a map")
        return value


def _is_text(value: object) -> bool:
    return isinstance(value, str) and len(value) <= _MAX_TEXT


def _is_path(value: object) -> bool:
    return isinstance(value, str | bytes) and len(value) <= _MAX_PATH


def _is_index(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_ID


def _hello(f: _Fields, _: Sequence[Any]) -> Hello:
    transforms = f.items("transforms", limit=256)
    if not all(_is_text(name) for name in transforms):
        raise f._fail("transforms", "a list of transform names")
    reads = f.items("reads", limit=256) if "reads" in f.header else []
    if not all(_is_text(entry) for entry in reads):
        raise f._fail("reads", "a list of URL prefixes")
    return Hello(
        producer=f.text("producer"),
        credits=f.integer("credits", low=1, high=1024),
        transforms=tuple(transforms),
        slots=f.text("slots") if "slots" in f.header else "",
        pid=f.integer("pid", low=1, high=2**31) if "pid" in f.header else None,
        reads=tuple(reads),
        decoder=f.text("decoder") if "decoder" in f.header else "",
    )


def _welcome(f: _Fields, _: Sequence[Any]) -> Welcome:
    return Welcome(
        session=f.text("session"),
        heartbeat_interval=f.number("heartbeat_interval", low=0.01, high=3600),
    )


def _heartbeat(f: _Fields, _: Sequence[Any]) -> Heartbeat:
    return Heartbeat()


def _unknown(f: _Fields, _: Sequence[Any]) -> Unknown:
    return Unknown()


def _incompatible(f: _Fields, _: Sequence[Any]) -> Incompatible:
    return Incompatible(
        speaks=f.integer("speaks", high=2**31), reason=brief(f.text("reason"), _MAX_TEXT)
    )


def _task(f: _Fields, _: Sequence[Any]) -> Task:
    size = f.items("size", limit=2)
    if len(size) != 2 or not all(_is_index(side) and 1 <= side <= _MAX_SIDE for side in size):
        raise f._fail("size", f"[height, width] with sides in [1, {_MAX_SIDE}]")
    dtype = f.text("dtype")
    if dtype not in DTYPES:
        raise f._fail("dtype", f"one of {DTYPES}")
    samples = f.items("samples")
    if not samples or not all(
        isinstance(s, list) and len(s) == 2 and _is_index(s[0]) and _is_path(s[1]) for s in samples
    ):
        raise f._fail(
            "samples",
            f"a non-empty list of [manifest row, path] pairs, paths of at most {_MAX_PATH} "
            "characters (a string, or bytes for a name that is not UTF-8)",
        )
    return Task(
        task_id=f.integer("id"),
        epoch=f.integer("epoch"),
        batch=f.integer("batch"),
        seed=f.integer("seed", high=2**64 - 1),
        image_size=(size[0], size[1]),
        dtype=dtype,
        augment=f.map("augment"),
        samples=tuple(
            (s[0], os.fsdecode(s[1]) if isinstance(s[1], bytes) else s[1]) for s in samples
        ),
        slot=f.optional_slot(),
    )


def _result(f: _Fields, data: Sequence[Any]) -> Result:
    skipped = f.items("skipped")
    if not all(
        isinstance(s, list)
        and len(s) == 3
        and _is_index(s[0])
        and _is_text(s[1])
        and _is_text(s[2])
        for s in skipped
    ):
        raise f._fail("skipped", "a list of [manifest row, kind, reason] triples")
    return Result(
        task_id=f.integer("id"),
        count=f.integer("count", high=_MAX_SAMPLES),
        skipped=tuple(Skipped(index=s[0], kind=s[1], reason=s[2]) for s in skipped),
        images=data[0] if data else b"",
        slot=f.optional_slot(),
    )


def _bye(f: _Fields, _: Sequence[Any]) -> Bye:
    returned = f.items("returned")
    if not all(_is_index(task_id) for task_id in returned):
        raise f._fail("returned", "a list of task ids")
    return Bye(returned=tuple(returned))


def _status_request(f: _Fields, _: Sequence[Any]) -> StatusRequest:
    return StatusRequest()


def _status(f: _Fields, _: Sequence[Any]) -> Status:
    return Status(state=f.map("state"))


_PARSERS: dict[str, Callable[[_Fields, Sequence[Any]], Message]] = {
    "hello": _hello,
    "welcome": _welcome,
    "heartbeat": _heartbeat,
    "unknown": _unknown,
    "incompatible": _incompatible,
    "task": _task,
    "result": _result,
    "bye": _bye,
    "status_request": _status_request,
    "status": _status,
}

"""Tests for zerofeed.common.protocol: round trips, every rejection, and fuzzing of decode."""

from __future__ import annotations

import os
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zerofeed.common.errors import ProtocolError
from zerofeed.common.protocol import (
    DTYPES,
    MAX_HEADER_BYTES,
    MAX_REASON_CHARS,
    PROTOCOL_VERSION,
    Bye,
    Heartbeat,
    Hello,
    Message,
    Result,
    Skipped,
    Task,
    Unknown,
    Welcome,
    brief,
    decode,
    encode,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TYPE_NAMES = ("hello", "welcome", "heartbeat", "unknown", "task", "result", "bye")
MESSAGE_TYPES = (Hello, Welcome, Heartbeat, Unknown, Task, Result, Bye)


def on_the_wire(frames: list[Any]) -> list[bytes]:
    """The frames as a receiving socket would hand them over: plain bytes."""
    return [bytes(memoryview(frame)) for frame in frames]


def roundtrip(message: Message) -> Message:
    return decode(on_the_wire(encode(message)))


def packed(header: dict[str, Any], *extra: bytes) -> list[bytes]:
    return [msgpack.packb(header), *extra]


def rejected(frames: list[Any], *fragments: str) -> str:
    """Decode ``frames``, expecting a ProtocolError whose message holds every fragment."""
    with pytest.raises(ProtocolError) as info:
        decode(frames)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# Minimal valid headers, one per type, that the rejection tests below break one field at a time.
VALID = {
    "hello": {"v": 1, "t": "hello", "producer": "host:1", "credits": 2, "transforms": ["sepia"]},
    "welcome": {"v": 1, "t": "welcome", "session": "s1", "heartbeat_interval": 1.5},
    "heartbeat": {"v": 1, "t": "heartbeat"},
    "unknown": {"v": 1, "t": "unknown"},
    "task": {
        "v": 1,
        "t": "task",
        "id": 7,
        "epoch": 0,
        "batch": 3,
        "seed": 42,
        "size": [4, 5],
        "dtype": "uint8",
        "augment": {"horizontal_flip": True},
        "samples": [[0, "a.png"], [9, "b/c.jpg"]],
    },
    "result": {"v": 1, "t": "result", "id": 7, "count": 1, "skipped": [[9, "decode", "bad"]]},
    "bye": {"v": 1, "t": "bye", "returned": [1, 2]},
}


def valid_frames(kind: str, **changes: Any) -> list[bytes]:
    header = {**VALID[kind], **changes}
    return packed(header, b"\x00" * 60) if kind == "result" else packed(header)


def without(kind: str, name: str) -> list[bytes]:
    header = {k: v for k, v in VALID[kind].items() if k != name}
    return packed(header, b"\x00" * 60) if kind == "result" else packed(header)


# --------------------------------------------------------------------------- round trips


def test_hello_roundtrip() -> None:
    message = Hello(producer="gpu-box:3", credits=4, transforms=("sepia", "plugins.blur"))
    assert roundtrip(message) == message


def test_hello_roundtrip_with_its_decode_path() -> None:
    message = Hello(
        producer="p", credits=2, decoder="portable (Pillow ...): _resample was not built"
    )
    assert roundtrip(message) == message
    assert "decoder" not in msgpack.unpackb(encode(Hello(producer="p", credits=1))[0])


def test_hello_roundtrip_without_transforms() -> None:
    message = Hello(producer="p", credits=1)
    assert roundtrip(message) == message


def test_welcome_roundtrip() -> None:
    message = Welcome(session="3f2a", heartbeat_interval=0.25)
    decoded = roundtrip(message)
    assert decoded == message
    assert isinstance(decoded, Welcome) and type(decoded.heartbeat_interval) is float


def test_welcome_integer_interval_becomes_float() -> None:
    decoded = decode(valid_frames("welcome", heartbeat_interval=2))
    assert decoded == Welcome(session="s1", heartbeat_interval=2.0)
    assert isinstance(decoded, Welcome) and type(decoded.heartbeat_interval) is float


@pytest.mark.parametrize("message", [Heartbeat(), Unknown()], ids=["heartbeat", "unknown"])
def test_fieldless_roundtrip(message: Message) -> None:
    frames = encode(message)
    assert len(frames) == 1
    assert roundtrip(message) == message


def test_task_roundtrip() -> None:
    message = Task(
        task_id=2**63 - 1,
        epoch=3,
        batch=17,
        seed=2**64 - 1,
        image_size=(224, 160),
        dtype="float32",
        augment={"random_resized_crop": {"scale": [0.5, 1.0], "ratio": [0.75, 1.25]}, "rotate": 10},
        samples=((5, "cats/1.jpg"), (0, "dogs/ü.png")),
    )
    decoded = roundtrip(message)
    assert decoded == message
    assert isinstance(decoded, Task)
    assert decoded.samples[1] == (0, "dogs/ü.png") and isinstance(decoded.samples, tuple)


def test_result_roundtrip_with_numpy_buffer() -> None:
    images = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    message = Result(
        task_id=11,
        count=2,
        skipped=(Skipped(index=8, kind="missing", reason="no such file"),),
        images=images,
    )
    frames = encode(message)
    assert len(frames) == 2
    assert memoryview(frames[1]).nbytes == images.nbytes  # the array itself, not a copy of a header
    decoded = decode(on_the_wire(frames))
    assert isinstance(decoded, Result)
    assert (decoded.task_id, decoded.count, decoded.skipped) == (11, 2, message.skipped)
    restored = np.frombuffer(decoded.images, dtype=np.uint8).reshape(images.shape)
    np.testing.assert_array_equal(restored, images)


def test_result_roundtrip_float_images_zero_copy_frame() -> None:
    images = np.linspace(0, 1, 2 * 2 * 2 * 3, dtype=np.float32).reshape(2, 2, 2, 3)
    frames = encode(Result(task_id=1, count=2, images=images))
    decoded = decode([frames[0], memoryview(images)])  # a buffer object, as zmq Frames give
    assert isinstance(decoded, Result)
    restored = np.frombuffer(decoded.images, dtype=np.float32).reshape(images.shape)
    np.testing.assert_array_equal(restored, images)


def test_bye_roundtrip() -> None:
    for message in (Bye(), Bye(returned=(3, 1, 2**63 - 1))):
        assert roundtrip(message) == message


def test_header_is_versioned_map() -> None:
    for message in (Hello(producer="p", credits=1), Heartbeat(), Bye()):
        header = msgpack.unpackb(encode(message)[0])
        assert header["v"] == PROTOCOL_VERSION
        assert header["t"] in TYPE_NAMES


# --------------------------------------------------------------------------- envelope rejections


def test_empty_frame_list_rejected() -> None:
    rejected([], "empty message")


def test_random_bytes_rejected() -> None:
    rejected([b"\xc1\xc1\xc1 not msgpack"], "not valid msgpack")


def test_truncated_msgpack_rejected() -> None:
    rejected([msgpack.packb(VALID["hello"])[:-3]], "not valid msgpack")


@pytest.mark.parametrize("value", [[1, "hello"], "hello", 1, None, b"\x01"])
def test_non_map_header_rejected(value: object) -> None:
    rejected([msgpack.packb(value)], "must be a msgpack map", type(value).__name__)


@pytest.mark.parametrize("version", [0, 2, "1", None, [1]])
def test_wrong_version_rejected(version: object) -> None:
    rejected(valid_frames("heartbeat", v=version), "protocol version", repr(version), "version 1")


def test_missing_version_rejected() -> None:
    rejected(without("hello", "v"), "protocol version None")


@pytest.mark.parametrize("version", [True, 1.0])
def test_version_of_wrong_type_rejected(version: object) -> None:
    rejected(valid_frames("heartbeat", v=version), "protocol version")


@pytest.mark.parametrize("kind", ["nope", "HELLO", 3, None, b"hello"])
def test_unknown_type_rejected(kind: object) -> None:
    message = rejected(valid_frames("heartbeat", t=kind), "unknown message type", repr(kind))
    assert "'hello'" in message  # the expected types are listed


def test_missing_type_rejected() -> None:
    rejected(without("heartbeat", "t"), "unknown message type None")


def test_result_without_data_frame_rejected() -> None:
    rejected(packed(VALID["result"]), "'result' message has 2 frame(s), got 1")


def test_result_with_two_data_frames_rejected() -> None:
    rejected(packed(VALID["result"], b"a", b"b"), "has 2 frame(s), got 3")


@pytest.mark.parametrize("kind", ["hello", "welcome", "heartbeat", "unknown", "task", "bye"])
def test_extra_frame_rejected(kind: str) -> None:
    rejected(packed(VALID[kind], b"\x00"), f"{kind!r} message has 1 frame(s), got 2")


def test_header_over_cap_rejected_before_unpacking() -> None:
    rejected([b"\x00" * (MAX_HEADER_BYTES + 1)], "exceeds", str(MAX_HEADER_BYTES))


def test_valid_msgpack_header_over_cap_rejected() -> None:
    header = {**VALID["hello"], "padding": "x" * MAX_HEADER_BYTES}
    rejected(packed(header), "exceeds")


def header_of_size(size: int) -> bytes:
    """A valid heartbeat header padded to exactly ``size`` bytes."""
    base = len(msgpack.packb({**VALID["heartbeat"], "pad": "x" * 70000}))
    frame = msgpack.packb({**VALID["heartbeat"], "pad": "x" * (70000 + size - base)})
    assert len(frame) == size
    return frame


def test_header_at_cap_is_read() -> None:
    assert decode([header_of_size(MAX_HEADER_BYTES)]) == Heartbeat()
    rejected([header_of_size(MAX_HEADER_BYTES + 1)], "exceeds")


def test_valid_headers_decode() -> None:
    """The baseline the field rejections below start from is itself accepted."""
    for kind, cls in zip(TYPE_NAMES, MESSAGE_TYPES, strict=True):
        assert isinstance(decode(valid_frames(kind)), cls)


# --------------------------------------------------------------------------- field rejections

REQUIRED_FIELDS = [
    ("hello", "producer"),
    ("hello", "credits"),
    ("hello", "transforms"),
    ("welcome", "session"),
    ("welcome", "heartbeat_interval"),
    ("task", "id"),
    ("task", "epoch"),
    ("task", "batch"),
    ("task", "seed"),
    ("task", "size"),
    ("task", "dtype"),
    ("task", "augment"),
    ("task", "samples"),
    ("result", "id"),
    ("result", "count"),
    ("result", "skipped"),
    ("bye", "returned"),
]


@pytest.mark.parametrize(("kind", "name"), REQUIRED_FIELDS)
def test_missing_field_rejected(kind: str, name: str) -> None:
    rejected(without(kind, name), f"{kind!r} message lacks field {name!r}")


BAD_FIELDS = [
    # integers: negative, bool, float, text, too large
    ("task", "id", -1),
    ("task", "id", True),
    ("task", "id", 1.0),
    ("task", "id", "7"),
    ("task", "epoch", -1),
    ("task", "epoch", False),
    ("task", "batch", -3),
    ("task", "seed", -1),
    ("task", "seed", True),
    ("result", "id", -1),
    ("result", "id", True),
    ("result", "count", -1),
    ("result", "count", 65537),
    ("result", "count", True),
    ("hello", "credits", 0),
    ("hello", "credits", 5000),
    ("hello", "credits", True),
    ("hello", "credits", 2.0),
    # text
    ("hello", "producer", 5),
    ("hello", "producer", b"bytes"),
    ("hello", "producer", "x" * 4097),
    ("welcome", "session", None),
    ("task", "dtype", "float64"),
    ("task", "dtype", 8),
    # numbers
    ("welcome", "heartbeat_interval", 0),
    ("welcome", "heartbeat_interval", 0.001),
    ("welcome", "heartbeat_interval", 3601),
    ("welcome", "heartbeat_interval", True),
    ("welcome", "heartbeat_interval", "1"),
    # lists and maps
    ("hello", "transforms", "sepia"),
    ("hello", "transforms", [1]),
    ("hello", "transforms", ["x"] * 257),
    ("task", "size", [0, 5]),
    ("task", "size", [5, 0]),
    ("task", "size", [5]),
    ("task", "size", [5, 5, 3]),
    ("task", "size", [-1, 5]),
    ("task", "size", [True, 5]),
    ("task", "size", [16385, 5]),
    ("task", "size", [4.0, 5]),
    ("task", "size", "4x5"),
    ("task", "augment", [1]),
    ("task", "augment", None),
    ("task", "samples", []),
    ("task", "samples", [[0]]),
    ("task", "samples", [[0, "a", 1]]),
    ("task", "samples", [[-1, "a"]]),
    ("task", "samples", [[True, "a"]]),
    ("task", "samples", [["0", "a"]]),
    ("task", "samples", [[0, 5]]),
    ("task", "samples", [0, "a"]),
    ("task", "samples", [[0, "x" * 65537]]),
    ("task", "samples", {"0": "a"}),
    ("result", "skipped", [[1, "decode"]]),
    ("result", "skipped", [[-1, "decode", "why"]]),
    ("result", "skipped", [[True, "decode", "why"]]),
    ("result", "skipped", [[1, 2, "why"]]),
    ("result", "skipped", [[1, "decode", None]]),
    ("result", "skipped", [1, "decode", "why"]),
    ("result", "skipped", None),
    ("bye", "returned", [-1]),
    ("bye", "returned", [True]),
    ("bye", "returned", ["1"]),
    ("bye", "returned", 1),
]


@pytest.mark.parametrize(("kind", "name", "value"), BAD_FIELDS)
def test_bad_field_rejected(kind: str, name: str, value: object) -> None:
    message = rejected(valid_frames(kind, **{name: value}), f"{kind!r} field {name!r} must be")
    assert "got " in message  # what was received is quoted
    assert len(message) < 400  # quoted values are truncated, not dumped whole


def test_samples_limit() -> None:
    samples = [[i, "a"] for i in range(65537)]
    rejected(valid_frames("task", samples=samples), "'samples' must be a list of at most 65536")


@pytest.mark.parametrize(
    ("kind", "name", "value", "expected"),
    [
        ("task", "id", 0, 0),
        ("task", "id", 2**63 - 1, 2**63 - 1),
        ("task", "seed", 2**64 - 1, 2**64 - 1),
        ("task", "size", [16384, 1], (16384, 1)),
        ("result", "count", 65536, 65536),
        ("hello", "credits", 1024, 1024),
        ("welcome", "heartbeat_interval", 3600, 3600.0),
        ("welcome", "heartbeat_interval", 0.01, 0.01),
    ],
)
def test_field_bounds_accepted(kind: str, name: str, value: object, expected: object) -> None:
    decoded = decode(valid_frames(kind, **{name: value}))
    attribute = {"id": "task_id", "size": "image_size", "credits": "credits"}.get(name, name)
    assert getattr(decoded, attribute) == expected


# --------------------------------------------------------------------------- fuzzing


def decodes_or_rejects(frames: list[Any]) -> None:
    try:
        message = decode(frames)
    except ProtocolError as exc:
        assert str(exc)
    else:
        assert isinstance(message, MESSAGE_TYPES)


valid_header_bytes = st.sampled_from(TYPE_NAMES).map(lambda kind: msgpack.packb(VALID[kind]))


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=64), valid_header_bytes), max_size=4))
def test_fuzz_arbitrary_frames(frames: list[bytes]) -> None:
    decodes_or_rejects(frames)


FIELD_NAMES = sorted({name for header in VALID.values() for name in header} - {"v", "t"})
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@FUZZ
@given(
    kind=st.sampled_from(TYPE_NAMES),
    fields=st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), values, max_size=10),
    extra=st.lists(st.binary(max_size=32), max_size=2),
)
def test_fuzz_headers_of_real_types(kind: str, fields: dict[str, Any], extra: list[bytes]) -> None:
    header = {**fields, "v": 1, "t": kind}
    decodes_or_rejects([msgpack.packb(header), *extra])


@FUZZ
@given(
    kind=st.sampled_from(TYPE_NAMES),
    data=st.data(),
)
def test_fuzz_one_field_of_a_valid_header(kind: str, data: st.DataObject) -> None:
    """A valid header with one field replaced by anything: decoded or rejected, nothing else."""
    header = dict(VALID[kind])
    name = data.draw(st.sampled_from(sorted(header)))
    header[name] = data.draw(values)
    extra = [b"\x00" * 12] if kind == "result" else []
    decodes_or_rejects([msgpack.packb(header), *extra])


texts = st.text(max_size=40)
ids = st.integers(min_value=0, max_value=2**63 - 1)
wire_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=10)
)
augments = st.dictionaries(
    st.text(max_size=10),
    st.recursive(
        wire_scalars,
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=5), children, max_size=3)
        ),
        max_leaves=6,
    ),
    max_size=4,
)
messages = st.one_of(
    st.builds(
        Hello,
        producer=texts,
        credits=st.integers(1, 1024),
        transforms=st.lists(texts, max_size=5).map(tuple),
    ),
    st.builds(
        Welcome,
        session=texts,
        heartbeat_interval=st.floats(min_value=0.01, max_value=3600),
    ),
    st.just(Heartbeat()),
    st.just(Unknown()),
    st.builds(
        Task,
        task_id=ids,
        epoch=ids,
        batch=ids,
        seed=st.integers(0, 2**64 - 1),
        image_size=st.tuples(st.integers(1, 16384), st.integers(1, 16384)),
        dtype=st.sampled_from(DTYPES),
        augment=augments,
        samples=st.lists(st.tuples(ids, texts), min_size=1, max_size=8).map(tuple),
    ),
    st.builds(
        Result,
        task_id=ids,
        count=st.integers(0, 65536),
        skipped=st.lists(st.builds(Skipped, index=ids, kind=texts, reason=texts), max_size=4).map(
            tuple
        ),
        images=st.binary(max_size=64),
    ),
    st.builds(Bye, returned=st.lists(ids, max_size=8).map(tuple)),
)


@FUZZ
@given(messages)
def test_fuzz_valid_messages_roundtrip(message: Message) -> None:
    decoded = roundtrip(message)
    assert type(decoded) is type(message)
    assert decoded == message


def test_any_file_name_crosses_the_wire_intact() -> None:
    names = ["img/plain.jpg", os.fsdecode(b"img/caf\xe9-\xff.jpg"), "d/" * 3000 + "long.jpg"]
    task = Task(
        task_id=1,
        epoch=0,
        batch=0,
        seed=0,
        image_size=(4, 4),
        dtype="uint8",
        augment={},
        samples=tuple(enumerate(names)),
    )
    assert decode(encode(task)) == task  # non-UTF-8 names travel as bytes, come back as str


def test_long_reasons_are_cut_short_saying_by_how_much() -> None:
    reason = brief("x" * 10_000)
    kept = reason.count("x")
    assert len(reason) <= MAX_REASON_CHARS and reason.endswith(f"[{10_000 - kept} more characters]")
    assert brief("short") == "short"

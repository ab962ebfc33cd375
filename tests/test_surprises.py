"""Loud on surprises (issue 12): inputs that used to do something quietly unexpected now say what
they are and how to say what was meant."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import msgpack
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from zerofeed.common.errors import ConfigError, ManifestError
from zerofeed.common.manifest import load_manifest, validate_label_mode
from zerofeed.common.protocol import PROTOCOL_VERSION, Incompatible, decode


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_typo_label_cannot_build_a_huge_one_hot_array(tmp_path: Path) -> None:
    manifest = load_manifest(write(tmp_path / "m.csv", "a.jpg,1\nb.jpg,2000000000\nc.jpg,0\n"))
    validate_label_mode("int", manifest)  # class indices stay fine
    with pytest.raises(ConfigError, match=r"label 2000000000 \(manifest row 1, 'b.jpg'\)"):
        validate_label_mode("categorical", manifest)


def test_whole_numbers_written_as_floats_are_class_indices(tmp_path: Path) -> None:
    manifest = load_manifest(write(tmp_path / "m.csv", "a.jpg,1.0\nb.jpg,0.0\nc.jpg,2.0\n"))
    assert manifest.label_kind == "class"
    assert manifest.labels is not None and manifest.labels.tolist() == [1, 0, 2]
    regression = load_manifest(write(tmp_path / "r.csv", "a.jpg,0.5\nb.jpg,1.0\n"))
    assert regression.label_kind == "vector"  # not all whole: a float target


def test_the_header_rule_is_logged_and_can_be_overridden(tmp_path: Path, caplog) -> None:
    csv = write(tmp_path / "m.csv", "img/0001,3\nimg/0002,4\n")  # files without extensions
    with caplog.at_level(logging.INFO, "zerofeed"):
        guessed = load_manifest(csv)
    assert guessed.paths == ("img/0002",)
    assert "read as a header" in caplog.text and "header=False" in caplog.text
    assert load_manifest(csv, header=False).paths == ("img/0001", "img/0002")
    with_header = write(tmp_path / "h.csv", "a.jpg,b.jpg\nc.jpg,d.jpg\n")
    assert load_manifest(with_header, header=True).paths == ("c.jpg",)


def test_a_fifo_is_named_as_such(tmp_path: Path) -> None:
    fifo = tmp_path / "train.csv"
    os.mkfifo(fifo)
    with pytest.raises(ManifestError, match="is a FIFO"):
        load_manifest(fifo)


def test_a_producer_of_another_protocol_version_is_told_which_one_we_speak(
    id_dataset: Path,
) -> None:
    from zerofeed.consumer import FeedSequence

    with FeedSequence(id_dataset, bind="tcp://127.0.0.1:0", local_producers=0) as seq:
        context = zmq.Context()
        peer = context.socket(zmq.DEALER)
        peer.linger = 0
        try:
            peer.connect(seq.endpoint)
            future = {"v": PROTOCOL_VERSION + 1, "t": "hello", "producer": "x", "credits": 1}
            peer.send(msgpack.packb(future))
            assert peer.poll(5000), "the consumer answers"
            reply = decode(peer.recv_multipart())
        finally:
            peer.close(linger=0)
            context.term()
    assert isinstance(reply, Incompatible) and reply.speaks == PROTOCOL_VERSION
    assert f"version {PROTOCOL_VERSION + 1}" in reply.reason


def test_an_incompatible_reply_is_read_whatever_its_version() -> None:
    future = msgpack.packb({"v": 99, "t": "incompatible", "speaks": 99, "reason": "upgrade"})
    reply = decode([future])
    assert reply == Incompatible(speaks=99, reason="upgrade")


# -- manifests as users write them, fuzzed ------------------------------------------------------

_SEGMENT = st.text(
    alphabet=st.characters(
        whitelist_categories=("Lu", "Ll", "Nd"), whitelist_characters=" -_,'\"é漢"
    ),
    min_size=1,
    max_size=12,
).filter(lambda s: s == s.strip() and s not in (".", ".."))
_PATH = st.lists(_SEGMENT, min_size=1, max_size=4).map(lambda parts: "/".join(parts) + ".jpg")
_ROWS = st.one_of(
    st.lists(st.tuples(_PATH, st.integers(0, 10**6)), min_size=1, max_size=30),
    st.lists(
        st.tuples(_PATH, st.text(alphabet="abcxyz", min_size=1, max_size=5)),
        min_size=1,
        max_size=30,
    ),
)


@settings(max_examples=60, deadline=None)
@given(rows=_ROWS)
def test_csv_rows_come_back_as_written(tmp_path_factory, rows) -> None:  # type: ignore[no-untyped-def]
    import csv

    folder = tmp_path_factory.mktemp("fuzz")
    manifest_path = folder / "m.csv"
    with manifest_path.open("w", newline="", encoding="utf-8") as out:
        csv.writer(out).writerows(rows)
    manifest = load_manifest(manifest_path, header=False)
    assert manifest.paths == tuple(path for path, _ in rows)
    labels = [label for _, label in rows]
    assert manifest.labels is not None
    if isinstance(labels[0], int):
        assert manifest.labels.tolist() == labels
    else:
        assert manifest.class_names == tuple(sorted(set(labels)))
        assert [manifest.class_names[i] for i in manifest.labels.tolist()] == labels

"""CURVE authentication and encryption, safe defaults and data confinement, on real sockets."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import curve_feed, ids_of, remote_feed, start_producer, write_id_dataset
from zerofeed.cli import main as zerofeed_main
from zerofeed.common.errors import FeedTimeoutError

pytestmark = pytest.mark.usefixtures("no_leftover_processes")


def curve_options(server: Path, secret: Path) -> tuple[str, ...]:
    return ("--server-key", str(server), "--secret-key", str(secret))


def stop(*producers: subprocess.Popen) -> None:
    for producer in producers:
        producer.send_signal(signal.SIGTERM)
    for producer in producers:
        producer.wait(timeout=30)


def test_key_files_are_written_private(keys: dict[str, Path], capsys) -> None:
    secret = keys["trainer"] / "zerofeed.key_secret"
    assert (secret.stat().st_mode & 0o777) == 0o600
    assert (keys["trainer"] / "zerofeed.key").read_text().count("public-key") == 1
    with pytest.raises(SystemExit):
        zerofeed_main(["keys", "generate", str(keys["trainer"])])
    assert "exists already" in capsys.readouterr().err


def test_only_authorized_producers_feed_the_trainer(tmp_path: Path, keys: dict[str, Path]) -> None:
    manifest = write_id_dataset(tmp_path / "data", 60)
    with curve_feed(manifest, keys) as seq:
        server = keys["trainer"] / "zerofeed.key"
        stranger = start_producer(
            seq.endpoint,
            manifest.parent,
            *curve_options(server, keys["strangers"] / "zerofeed.key_secret"),
        )
        keyless = start_producer(seq.endpoint, manifest.parent)
        trusted = start_producer(
            seq.endpoint,
            manifest.parent,
            *curve_options(server, keys["producers"] / "zerofeed.key_secret"),
        )
        try:
            for _ in range(2):
                rows = [r for i in range(len(seq)) for r in ids_of(seq[i][0])]
                assert Counter(rows) == Counter(range(60))
                seq.on_epoch_end()
            deadline = time.monotonic() + 30
            while seq.stats.connections_refused < 2 and time.monotonic() < deadline:
                time.sleep(0.05)  # polling a counter, not synchronising on time
            stats = seq.stats
            assert stats.producers_connected == 1, "only the authorized producer got in"
            assert stats.connections_refused >= 2, "both refusals are counted"
        finally:
            stop(stranger, keyless, trusted)


def test_producer_with_the_wrong_server_key_cannot_connect(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    manifest = write_id_dataset(tmp_path / "data", 10)
    with curve_feed(manifest, keys, timeout=3.0) as seq:
        impostor_server_key = keys["strangers"] / "zerofeed.key"
        producer = start_producer(
            seq.endpoint,
            manifest.parent,
            *curve_options(impostor_server_key, keys["producers"] / "zerofeed.key_secret"),
        )
        try:
            with pytest.raises(FeedTimeoutError):
                seq[0]
            assert seq.stats.producers_connected == 0
        finally:
            stop(producer)


def test_local_producers_authenticate_themselves(tmp_path: Path, keys: dict[str, Path]) -> None:
    manifest = write_id_dataset(tmp_path / "data", 30)
    with curve_feed(manifest, keys, local_producers=1) as seq:
        rows = [r for i in range(len(seq)) for r in ids_of(seq[i][0])]
    assert Counter(rows) == Counter(range(30))


@contextmanager
def recording_proxy(target: str) -> Iterator[tuple[str, bytearray]]:
    """A TCP relay to ``target`` that records every byte crossing it, both ways."""
    host, port = target.removeprefix("tcp://").rsplit(":", 1)
    listener = socket.create_server(("127.0.0.1", 0))
    captured = bytearray()
    lock = threading.Lock()
    stopping = threading.Event()

    def pump(source: socket.socket, sink: socket.socket) -> None:
        while not stopping.is_set():
            try:
                chunk = source.recv(1 << 16)
            except OSError:
                return
            if not chunk:
                return
            with lock:
                captured.extend(chunk)
            try:
                sink.sendall(chunk)
            except OSError:
                return

    def accept() -> None:
        listener.settimeout(0.2)
        while not stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection((host, int(port)))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=pump, args=(source, sink), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}", captured
    finally:
        stopping.set()
        acceptor.join(timeout=5)
        listener.close()


@pytest.mark.parametrize("encrypted", [True, False])
def test_no_image_bytes_cross_the_wire_in_the_clear(
    tmp_path: Path, keys: dict[str, Path], encrypted: bool
) -> None:
    """With CURVE, delivered pixels never appear in the captured stream; without, they do."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    pairs = []
    for i in range(12):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
        pairs.append((path.name, i % 2))
    (tmp_path / "m.csv").write_text("".join(f"{p},{label}\n" for p, label in pairs))
    settings = {"batch_size": 4, "image_size": (32, 32), "shuffle": False}
    if encrypted:
        context = curve_feed(tmp_path / "m.csv", keys, **settings)
        options = curve_options(
            keys["trainer"] / "zerofeed.key", keys["producers"] / "zerofeed.key_secret"
        )
    else:
        context = remote_feed(tmp_path / "m.csv", **settings)
        options = ()
    with context as seq, recording_proxy(seq.endpoint) as (proxy, captured):
        producer = start_producer(proxy, tmp_path, *options)
        try:
            batches = [seq[i][0] for i in range(len(seq))]
        finally:
            stop(producer)
    sent = [x[k].tobytes()[: 3 * 32 * 4] for x in batches for k in range(len(x))]
    found = sum(1 for pixels in sent if bytes(pixels) in captured)
    if encrypted:
        assert found == 0, "image bytes crossed the wire in the clear"
    else:
        assert found == len(sent), "the control run must see the pixels"


def test_paths_outside_the_data_root_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    manifest = write_id_dataset(root, 4)
    outside = write_id_dataset(tmp_path / "elsewhere", 2)
    (root / "img" / "00001.png").unlink()
    (root / "img" / "00001.png").symlink_to(outside.parent / "img" / "00000.png")
    pairs = [
        (root / "img" / "00000.png", 0),
        (root / "img" / "00001.png", 0),
        (outside.parent / "img" / "00001.png", 0),
        (root / "img" / ".." / ".." / "x.png", 0),
    ]
    with remote_feed(pairs, batch_size=4, shuffle=False, on_error="skip") as seq:
        producer = start_producer(seq.endpoint, root)
        try:
            x, _ = seq[0]
        finally:
            stop(producer)
        kinds = sorted((Path(s.path).name, s.kind) for s in seq.stats.skipped)
    assert ids_of(x) == [0]
    assert kinds == [
        ("00001.png", "outside_root"),
        ("00001.png", "outside_root"),
        ("x.png", "outside_root"),
    ]
    assert manifest.exists()


def test_plain_tcp_on_the_network_warns(id_dataset: Path, caplog) -> None:
    with remote_feed(id_dataset, bind="tcp://0.0.0.0:0", batch_size=10):
        pass
    assert any("WITHOUT authentication" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with remote_feed(id_dataset, batch_size=10):  # loopback: no warning
        pass
    assert not any("WITHOUT authentication" in r.getMessage() for r in caplog.records)


def test_locator_checks_every_file_and_folder_though_it_remembers_folders(tmp_path: Path) -> None:
    from zerofeed.common.errors import BadSampleError
    from zerofeed.producer.paths import SampleLocator

    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "img").mkdir(parents=True)
    outside.mkdir()
    (root / "img" / "a.png").write_bytes(b"a")
    (outside / "b.png").write_bytes(b"b")
    (root / "img" / "b.png").symlink_to(outside / "b.png")
    (root / "img" / "c.png").symlink_to(root / "img" / "a.png")
    (root / "away").symlink_to(outside)
    locator = SampleLocator(root)
    assert locator.locate("img/a.png") == root.resolve() / "img" / "a.png"
    assert locator.locate("img/c.png") == root.resolve() / "img" / "a.png"  # inside: fine
    for path in ("img/b.png", "away/b.png", "img/../../outside/b.png", str(outside / "b.png")):
        with pytest.raises(BadSampleError) as caught:
            locator.locate(path)
        assert caught.value.kind == "outside_root", path
    (root / "img" / "a.png").unlink()
    (root / "img" / "a.png").symlink_to(outside / "b.png")  # the file changed: noticed
    with pytest.raises(BadSampleError):
        locator.locate("img/a.png")


def test_locator_refuses_a_sibling_folder_whose_name_starts_with_the_roots(tmp_path: Path) -> None:
    from zerofeed.common.errors import BadSampleError
    from zerofeed.producer.paths import SampleLocator

    root, sibling = tmp_path / "data", tmp_path / "data2"
    root.mkdir()
    sibling.mkdir()
    (root / "a.png").write_bytes(b"a")
    (sibling / "b.png").write_bytes(b"b")
    (root / "twin").symlink_to(sibling)
    locator = SampleLocator(root)
    assert locator.locate("a.png") == root.resolve() / "a.png"
    for path in ("../data2/b.png", str(sibling / "b.png"), "twin/b.png", "..", "../data2"):
        with pytest.raises(BadSampleError) as caught:
            locator.locate(path)
        assert caught.value.kind == "outside_root", path
    assert SampleLocator(Path("/")).locate(str(sibling / "b.png")) == sibling.resolve() / "b.png"


def test_a_file_swapped_for_a_symlink_while_being_read_is_never_followed_out(
    tmp_path: Path,
) -> None:
    """The data-root check and the open are one step for the file itself (``O_NOFOLLOW``): a
    thread swaps a file inside the root between itself and a symlink to a secret outside it, as
    fast as it can, while samples are read; no read may return the secret."""
    import threading

    from zerofeed.common.errors import BadSampleError
    from zerofeed.producer.paths import SampleLocator
    from zerofeed.producer.reader import SampleReader

    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (root / "plain").write_bytes(b"plain")
    (root / "link").symlink_to(outside / "secret")
    reader = SampleReader(locator=SampleLocator(root))
    stop = threading.Event()
    swaps = 0

    def swap() -> None:
        nonlocal swaps
        while not stop.is_set():
            os.link(root / "plain", root / "spare")
            os.replace(root / "spare", root / "sample")  # a plain file
            os.symlink(outside / "secret", root / "spare")
            os.replace(root / "spare", root / "sample")  # a symlink out of the root
            swaps += 1

    swapper = threading.Thread(target=swap)
    (root / "sample").write_bytes(b"plain")
    swapper.start()
    outcomes: dict[str, int] = {}
    try:
        for _ in range(20_000):
            try:
                outcome = reader.read("sample").decode()
            except BadSampleError as exc:
                outcome = exc.kind
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    finally:
        stop.set()
        swapper.join()
    assert "secret" not in outcomes, outcomes
    assert outcomes.get("plain", 0) > 0 and swaps > 100, (outcomes, swaps)
    assert set(outcomes) <= {"plain", "outside_root", "missing", "unreadable"}, outcomes

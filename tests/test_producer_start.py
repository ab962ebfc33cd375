"""A producer that cannot work, or cannot reach its consumer, says why within seconds.

Real `zerofeed producer` processes for the start-up failures; a real :class:`Worker` on real
sockets for what the link tells it (a silent peer, a CURVE trainer reached without keys, a wrong
server key, a key the trainer does not authorise).
"""

from __future__ import annotations

import logging
import re
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import zmq

import zerofeed
from tests.conftest import curve_feed
from zerofeed.cli import main as zerofeed_main
from zerofeed.common.errors import ConfigError
from zerofeed.common.plugins import load_plugins
from zerofeed.common.producer_config import ProducerConfig
from zerofeed.producer.batch import BatchMaker
from zerofeed.producer.paths import SampleLocator
from zerofeed.producer.reader import SampleReader
from zerofeed.producer.supervisor import EXIT_CONFIG_ERROR, EXIT_CRASH_LOOP
from zerofeed.producer.worker import Worker

pytestmark = pytest.mark.usefixtures("no_leftover_processes")

ROOT = Path(__file__).resolve().parent.parent


def test_version_comes_from_the_one_source(capsys) -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert zerofeed.__version__ == declared
    assert zerofeed_main(["--version"]) == 0
    assert capsys.readouterr().out == f"zerofeed {declared}\n"


def _producer(*options: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "zerofeed", "producer", "--connect", "tcp://127.0.0.1:9"]
    return subprocess.run(
        [*command, *options], capture_output=True, text=True, timeout=60, check=False
    )


def test_a_plugin_that_does_not_import_stops_the_producer_before_any_worker() -> None:
    started = time.monotonic()
    done = _producer("--plugin", "no_such_plugin_module", "--workers", "2")
    assert done.returncode == EXIT_CONFIG_ERROR
    assert "producer cannot start" in done.stderr
    assert "no_such_plugin_module" in done.stderr
    assert "worker" not in done.stderr.split("producer cannot start")[0]  # no worker started
    assert time.monotonic() - started < 30


def test_workers_that_crash_at_start_stop_the_producer_with_their_reason() -> None:
    # A port already taken: every worker fails to serve its metrics the moment it starts.
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _producer("--metrics-port", str(port))
    assert done.returncode == EXIT_CRASH_LOOP, done.stderr[-2000:]
    assert f"cannot serve metrics on port {port}" in done.stderr
    assert "keeps crashing at start" in done.stderr
    assert done.stderr.count("restarting in") == 2  # three quick crashes, then it stops


# -- what a worker says about its link --------------------------------------------------------


@contextmanager
def running_worker(endpoint: str, *more: str, **settings: object) -> Iterator[Worker]:
    """A real worker serving ``endpoint`` (and ``more``) on a thread of this process, stopped on
    exit."""
    config = ProducerConfig(endpoints=(endpoint, *more), silence_warning=0.5, **settings)  # type: ignore[arg-type]
    stop = threading.Event()
    worker = Worker(
        config,
        name="probe",
        maker=BatchMaker(
            reader=SampleReader(locator=SampleLocator(None)), transforms=load_plugins(())
        ),
        transforms=(),
        should_stop=stop.is_set,
    )
    thread = threading.Thread(target=worker.run, name="probe-worker")
    thread.start()
    try:
        yield worker
    finally:
        stop.set()
        thread.join(timeout=10)
        if thread.is_alive():
            raise RuntimeError("the worker did not stop")


def wait_for_log(caplog, pattern: str, *, within: float = 8.0) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for record in caplog.records:
            if re.search(pattern, record.getMessage()):
                return record.getMessage()
        time.sleep(0.05)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    raise AssertionError(f"no log line matching {pattern!r} within {within} s; logged:\n{logged}")


def test_nothing_listening_is_said_after_a_few_seconds(caplog) -> None:
    caplog.set_level(logging.WARNING, "zerofeed.producer")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    with running_worker(f"tcp://127.0.0.1:{port}"):
        message = wait_for_log(caplog, "no consumer has answered")
    assert "nothing accepts connections there" in message
    assert "not reading" not in caplog.text


def test_a_peer_that_never_answers_hello_is_named(caplog) -> None:
    caplog.set_level(logging.WARNING, "zerofeed.producer")
    context = zmq.Context()
    silent = context.socket(zmq.ROUTER)
    try:
        port = silent.bind_to_random_port("tcp://127.0.0.1")
        with running_worker(f"tcp://127.0.0.1:{port}"):
            message = wait_for_log(caplog, "no consumer has answered")
        assert "nothing answered this producer's HELLO" in message
    finally:
        context.destroy(linger=0)


@pytest.mark.parametrize(
    ("server", "client", "expected"),
    [
        (None, None, "consumer requires CURVE"),  # a producer without keys
        ("strangers", "producers", "is --server-key the public key"),  # wrong server key
        ("trainer", "strangers", "refused this producer's CURVE key"),  # not authorised
    ],
)
def test_a_producer_without_the_right_keys_is_told_its_handshake_fails_and_why(
    id_dataset: Path,
    keys: dict[str, Path],
    caplog,
    server: str | None,
    client: str | None,
    expected: str,
) -> None:
    caplog.set_level(logging.WARNING, "zerofeed.producer")
    own = (
        {"server_key": keys[server] / "zerofeed.key"}
        | {"secret_key": keys[client] / "zerofeed.key_secret"}
        if server is not None and client is not None
        else {}
    )
    with curve_feed(id_dataset, keys) as feed, running_worker(feed.endpoint, **own):
        message = wait_for_log(caplog, re.escape(expected), within=5)
    assert "handshake with the consumer" in message
    assert "not reading" not in caplog.text


def test_workers_exit_when_their_supervisor_is_sigkilled() -> None:
    import psutil

    command = [sys.executable, "-m", "zerofeed", "producer", "--connect", "tcp://127.0.0.1:9"]
    supervisor = subprocess.Popen([*command, "--workers", "2"], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        workers: list[psutil.Process] = []
        while len(workers) < 2 and time.monotonic() < deadline:
            workers = [
                child
                for child in psutil.Process(supervisor.pid).children()
                if "spawn_main" in " ".join(child.cmdline())
            ]
            time.sleep(0.1)
        assert len(workers) == 2
    finally:
        supervisor.kill()
        supervisor.wait(timeout=30)
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, "workers outlived their supervisor's SIGKILL"


def test_connect_repeats_and_the_environment_holds_a_comma_list() -> None:
    from zerofeed.producer.cli import build_parser, config_from_args

    def endpoints(argv: list[str], environ: dict[str, str]) -> tuple[str, ...]:
        return config_from_args(build_parser(environ).parse_args(argv)).endpoints

    a, b, c = "tcp://t0:5555", "tcp://t1:5555", "tcp://t2:5555"
    assert endpoints(["--connect", a, "--connect", b], {}) == (a, b)
    assert endpoints([], {"ZEROFEED_CONNECT": f"{a}, {b},{c}"}) == (a, b, c)
    assert endpoints(["--connect", c], {"ZEROFEED_CONNECT": a}) == (c,)  # flags win
    ipc = "ipc:///tmp/a,b/feed.sock"  # a flag is one endpoint, whatever its path holds
    assert endpoints(["--connect", ipc], {}) == (ipc,)
    with pytest.raises(ConfigError, match="given twice"):
        endpoints(["--connect", a, "--connect", a], {})
    with pytest.raises(ConfigError, match="one endpoint"):
        ProducerConfig(endpoints=(a, b), slots=(Path("/dev/shm/x"), 1, 1))


def test_the_command_line_a_feed_writes_parses_back_into_the_same_config(tmp_path) -> None:
    """One contract, both sides: ``ProducerConfig.to_argv`` (written by a feed for its local
    producers) and ``zerofeed producer``'s parser agree on every field, whatever the environment."""
    import dataclasses

    from zerofeed.common.producer_config import default_of
    from zerofeed.producer.cli import build_parser, config_from_args

    keys = tmp_path / "keys"
    keys.mkdir()
    config = ProducerConfig(
        endpoints=("tcp://t0:5555",),
        workers=3,
        max_workers=5,
        data_root=tmp_path,
        plugins=("tests.plugin_example", "tests.plugin_slow"),
        prefetch=5,
        heartbeat_interval=0.25,
        reconnect_after=7.5,
        silence_warning=2.5,
        sample_timeout=60.0,
        max_pixels=1_000_000,
        server_key=keys / "server.key",
        secret_key=keys / "producer.key_secret",
        report_interval=0.0,
        metrics_port=9400,
        exit_with_consumer=True,
        exit_with_parent=True,
        name="local:42",
        slots=(Path("/dev/shm/zerofeed-x"), 4096, 3),
        allow=("s3://bucket/prefix/", "https://host:8443/images/"),
        cache_dir=tmp_path / "cache",
        cache_size=3 * 2**20,
        store_timeout=4.0,
        store_retry=9.0,
        log_level="DEBUG",
    )
    unset = [
        f.name
        for f in dataclasses.fields(ProducerConfig)
        if f.name != "endpoints" and getattr(config, f.name) == default_of(f.name)
    ]
    assert unset == [], f"give these fields a value other than the default here: {unset}"
    # Variables the trainer's environment may hold must not change what the command line says.
    environ = {"ZEROFEED_PREFETCH": "9", "ZEROFEED_CONNECT": "tcp://elsewhere:1"}
    parsed = config_from_args(build_parser(environ).parse_args(config.to_argv()))
    assert parsed == config
    defaults = ProducerConfig(endpoints=("tcp://t0:5555",))
    assert config_from_args(build_parser({}).parse_args(defaults.to_argv())) == defaults


def test_a_producer_without_the_accelerators_says_so_and_why() -> None:
    """The decode path a producer logs at start and reports in HELLO: with an accelerator
    missing, "portable" with the module and what to do (here _jpegwindow is made unimportable)."""
    import subprocess
    import sys

    probe = (
        "import sys; sys.modules['zerofeed.producer._jpegwindow'] = None\n"
        "from zerofeed.producer import decode\n"
        "from zerofeed.producer.accelerators import decode_path\n"
        "path = decode_path(); print(path.accelerated); print(path.summary)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    accelerated, summary = done.stdout.strip().split("\n", 1)
    assert accelerated == "False"
    assert summary.startswith("portable (simplejpeg and Pillow: the same pixels, more slowly)")
    assert "_jpegwindow" in summary and "_resample" not in summary
    assert "install a zerofeed wheel" in summary and "libjpeg62-turbo-dev" in summary


def test_the_producer_logs_its_decode_path_at_start() -> None:
    import signal

    command = [sys.executable, "-m", "zerofeed", "producer", "--connect", "tcp://127.0.0.1:9"]
    producer = subprocess.Popen(
        [*command, "--workers", "1"], stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert producer.stderr is not None
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (line := producer.stderr.readline()):
            lines.append(line)
            if "decode path:" in line:
                break
        logged = "".join(lines)
        # this machine builds both accelerators (./dev installs libjpeg-turbo's headers)
        assert "decode path: accelerated (C crop-window JPEG decode and resize" in logged, logged
    finally:
        producer.send_signal(signal.SIGTERM)
        producer.communicate(timeout=30)

"""Producers on separate hosts: Linux network namespaces joined to this one by veth links.

Each producer host has its own address and reaches the consumer only over its own link, so the
test sees what crosses a network: exactly once across hosts, and a host whose link is cut mid-epoch
(link down, every packet dropped, or only those to the host) costs nothing but a short delay. Needs root and `ip netns`;
skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ids_of, remote_feed, wait_until, write_id_dataset

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_leftover_processes")]


def run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=30)


@dataclass
class Host:
    """A network namespace with one veth link to this namespace."""

    namespace: str
    link: str  # the link's end on this side
    address: str  # the host's own address
    gateway: str  # this side's address on the link
    producers: list[subprocess.Popen] = field(default_factory=list)

    def start_producer(self, endpoint: str, data_root: Path) -> None:
        command = [
            "ip",
            "netns",
            "exec",
            self.namespace,
            sys.executable,
            "-m",
            "zerofeed",
            "producer",
            "--connect",
            endpoint,
            "--data-root",
            str(data_root),
            "--workers",
            "1",
            "--heartbeat-interval",
            "0.25",
        ]
        self.producers.append(subprocess.Popen(command, stderr=subprocess.DEVNULL))

    def stop_producers(self) -> None:
        for producer in self.producers:
            if producer.poll() is None:
                producer.send_signal(signal.SIGTERM)
        for producer in self.producers:
            try:
                producer.wait(timeout=30)
            except subprocess.TimeoutExpired:
                producer.kill()
                producer.wait()


def make_host(index: int) -> Host:
    tag = f"{os.getpid() % 100000}{index}"
    host = Host(
        namespace=f"zf-test-{tag}",
        link=f"zfh{tag}",
        address=f"10.231.{index}.2",
        gateway=f"10.231.{index}.1",
    )
    peer = f"zfp{tag}"
    run("ip", "netns", "add", host.namespace)
    run("ip", "link", "add", host.link, "type", "veth", "peer", "name", peer)
    run("ip", "link", "set", peer, "netns", host.namespace)
    run("ip", "addr", "add", f"{host.gateway}/24", "dev", host.link)
    run("ip", "link", "set", host.link, "up")
    inside = ("ip", "netns", "exec", host.namespace)
    run(*inside, "ip", "addr", "add", f"{host.address}/24", "dev", peer)
    run(*inside, "ip", "link", "set", peer, "up")
    run(*inside, "ip", "link", "set", "lo", "up")
    return host


def remove_host(host: Host) -> None:
    host.stop_producers()
    subprocess.run(
        ["ip", "route", "del", "blackhole", f"{host.address}/32"], capture_output=True, timeout=30
    )
    subprocess.run(["ip", "link", "del", host.link], capture_output=True, timeout=30)
    subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True, timeout=30)


@pytest.fixture
def hosts() -> Iterator[list[Host]]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    made: list[Host] = []
    try:
        for index in (1, 2):
            made.append(make_host(index))
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        for host in made:
            remove_host(host)
        reason = (
            exc.stderr.decode().strip() if isinstance(exc, subprocess.CalledProcessError) else exc
        )
        pytest.skip(f"cannot create network namespaces here: {reason}")
    try:
        yield made
    finally:
        for host in made:
            remove_host(host)


def cut_link_down(host: Host) -> None:
    run("ip", "link", "set", host.link, "down")


def cut_drop_both_ways(host: Host) -> None:
    """Like a firewall DROP rule: the link stays up, every packet either way is lost."""
    run("ip", "route", "add", "blackhole", f"{host.address}/32")
    run(
        "ip",
        "netns",
        "exec",
        host.namespace,
        "ip",
        "route",
        "add",
        "blackhole",
        f"{host.gateway}/32",
    )


def cut_consumer_to_host(host: Host) -> None:
    """A one-way partition: the host's heartbeats still arrive, tasks to it are lost."""
    run("ip", "route", "add", "blackhole", f"{host.address}/32")


@pytest.mark.parametrize("cut", [cut_link_down, cut_drop_both_ways, cut_consumer_to_host])
def test_exactly_once_across_hosts_when_one_host_is_cut_off(
    hosts: list[Host], tmp_path: Path, cut
) -> None:
    manifest = write_id_dataset(tmp_path, 240)
    with remote_feed(
        manifest,
        bind="tcp://0.0.0.0:0",
        batch_size=8,
        seed=7,
        lease_timeout=2.0,
        heartbeat_interval=0.25,
        max_queue_size=6,
    ) as seq:
        port = seq.endpoint.rsplit(":", 1)[1]
        for host in hosts:
            host.start_producer(f"tcp://{host.gateway}:{port}", manifest.parent)
        wait_until(lambda: seq.stats.producers_connected == 2)  # both hosts, before any work
        first = [r for i in range(len(seq)) for r in ids_of(seq[i][0])]
        assert Counter(first) == Counter(range(240))
        assert seq.stats.producers_connected == 2, "one producer per host"
        seq.on_epoch_end()
        rows = [r for i in range(6) for r in ids_of(seq[i][0])]
        cut(hosts[0])  # mid-epoch, with tasks in flight on both hosts
        rows += [r for i in range(6, len(seq)) for r in ids_of(seq[i][0])]
        assert Counter(rows) == Counter(range(240))
        stats = seq.stats
    assert stats.producers_lost >= 1

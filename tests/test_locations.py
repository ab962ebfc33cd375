"""Sample locations as text, producers' --allow rule, byte sizes, and the bounded disk cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zerofeed.common.errors import BadSampleError, ConfigError, ManifestError
from zerofeed.common.locations import (
    AllowList,
    join_url,
    member_path,
    origin,
    parse_member,
    split_url,
)
from zerofeed.common.manifest import load_manifest
from zerofeed.common.producer_config import ProducerConfig
from zerofeed.common.protocol import Hello, decode, encode
from zerofeed.common.sizes import parse_size
from zerofeed.producer.cache import DiskCache
from zerofeed.producer.paths import SampleLocator
from zerofeed.producer.reader import SampleReader


def test_urls_split_into_origin_and_key() -> None:
    assert split_url("s3://bkt/a/b.jpg") == ("s3://bkt", "a/b.jpg")
    assert split_url("https://host:8443/x/y.png") == ("https://host:8443", "x/y.png")
    assert origin("http://h/p") == "http://h"
    for bad in ("s3:///key", "https://h/a.jpg?X-Amz-Signature=1", "https://u:p@h/a.jpg"):
        with pytest.raises(ConfigError):
            split_url(bad)


def test_credentials_in_a_url_are_not_repeated_in_the_error() -> None:
    with pytest.raises(ConfigError) as caught:
        split_url("https://user:hunter2@h/a.jpg")
    assert "hunter2" not in str(caught.value)


def test_relative_rows_join_their_folder_url_without_leaving_the_bucket() -> None:
    assert join_url("s3://b/data/", "img/1.jpg") == "s3://b/data/img/1.jpg"
    assert join_url("s3://b/data/", "../other/1.jpg") == "s3://b/other/1.jpg"
    assert join_url("s3://b/data/", "../../../1.jpg") == "s3://b/1.jpg"
    assert join_url("s3://b/data/", "https://h/1.jpg") == "https://h/1.jpg"


@given(
    st.text(alphabet="abc/._-", min_size=1, max_size=20),
    st.integers(0, 10**12),
    st.integers(0, 10**9),
)
def test_member_paths_round_trip(name: str, offset: int, size: int) -> None:
    container = f"s3://b/{name}.tar"
    member = parse_member(member_path(container, offset, size))
    assert member is not None and (member.container, member.offset, member.size) == (
        container,
        offset,
        size,
    )


def test_only_tar_ranges_are_members() -> None:
    assert parse_member("img/a#1.jpg") is None
    assert parse_member("shard.tar#12") is None
    assert parse_member("shard.zip#1+2") is None


def test_allow_list_permits_at_component_boundaries() -> None:
    allow = AllowList(("s3://bkt", "https://h/pub/", "s3://"))
    assert allow.permits("https://h/pub/a.jpg")
    assert not allow.permits("https://h/private/a.jpg")
    assert not allow.permits("https://h/pub/../private/a.jpg")
    assert AllowList(("s3://bkt",)).permits("s3://bkt/a.jpg")
    assert not AllowList(("s3://bkt",)).permits("s3://bktother/a.jpg")
    assert not allow.permits("https://h/pub/%2E%2e/private/a.jpg")
    assert not allow.permits("https://h/pub/..%2fprivate/a.jpg")
    assert allow.permits("s3://anything/a.jpg")
    assert not AllowList().permits("s3://bkt/a.jpg")
    assert "--allow s3://bkt/img/" in AllowList().refusal("s3://bkt/img/a.jpg")
    with pytest.raises(ConfigError):
        AllowList(("bucket-without-scheme",))


def test_hello_carries_what_a_producer_may_read() -> None:
    hello = Hello(producer="p", credits=2, reads=("s3://bkt",))
    assert decode(encode(hello)) == hello
    assert decode(encode(Hello(producer="p", credits=2))).reads == ()


@pytest.mark.parametrize(
    ("text", "size"),
    [("256MB", 256 * 10**6), ("20GiB", 20 * 2**30), ("1_000", 1000), ("1.5kb", 1500)],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_bad_size_says_how_to_write_one() -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 256MB"):
        parse_size("lots")


def test_manifest_of_urls_names_its_stores(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("s3://b1/a.jpg,0\nhttps://h:81/x/b.jpg,1\nlocal/c.jpg,0\n")
    loaded = load_manifest(manifest)
    assert loaded.origins == {"s3://b1", "https://h:81"}
    assert loaded.url_prefixes == {"s3://b1/", "https://h:81/x/"}
    assert loaded.producer_paths[0] == "s3://b1/a.jpg"
    assert loaded.producer_paths[2] == "local/c.jpg"


def test_cache_keeps_entries_and_stays_within_its_budget(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path / "c", 2**20)
    assert cache.get("a") is None
    cache.put("a", b"x" * 1000)
    assert cache.get("a") == b"x" * 1000
    for i in range(300):
        cache.put(f"k{i}", os.urandom(40_000))  # 12 MB through a 1 MiB cache
    assert cache.size() <= 2**20 * 1.1
    assert cache.get("k299") is not None  # the newest stay


_HAMMER = """
import sys
from pathlib import Path
from zerofeed.producer.cache import DiskCache
cache = DiskCache(Path(sys.argv[1]), 2**20)
worker, wrong = int(sys.argv[2]), 0
for i in range(400):
    key = f"k{(i * 7 + worker) % 120}"
    data = key.encode() * 4000
    found = cache.get(key)
    if found is not None and found != data:
        wrong += 1
    cache.put(key, data)
print(wrong)
"""


def test_cache_shared_by_processes_never_serves_a_torn_entry(tmp_path: Path) -> None:
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _HAMMER, str(tmp_path / "c"), str(w)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for w in range(3)
    ]
    wrong = [int(w.communicate(timeout=120)[0]) for w in workers]
    assert wrong == [0, 0, 0]
    assert DiskCache(tmp_path / "c", 2**20).size() <= 2**20 * 1.3


def test_shard_members_of_urls_are_manifest_paths() -> None:
    loaded = load_manifest([("s3://b/s/a.tar#512+10", 1), ("s3://b/s/b.tar#0+3", 2)])
    assert loaded.url_prefixes == {"s3://b/s/"}
    with pytest.raises(ManifestError, match="query string"):
        load_manifest([("https://h/a.jpg?sig=1", 0)])


def test_reader_refuses_what_allow_does_not_cover_without_reading(tmp_path: Path) -> None:
    reader = SampleReader(locator=SampleLocator(tmp_path), allow=AllowList(("s3://bkt/pub/",)))
    with pytest.raises(BadSampleError) as caught:
        reader.read("s3://bkt/private/a.jpg")
    assert caught.value.kind == "not_allowed" and reader.remote_reads == 0


def test_sample_timeout_must_outlast_the_store_retries() -> None:
    with pytest.raises(ConfigError, match="sample_timeout"):
        ProducerConfig(
            endpoints=("tcp://h:1",), allow=("s3://b",), sample_timeout=20, store_retry=15
        )
    ProducerConfig(endpoints=("tcp://h:1",), allow=("s3://b",), sample_timeout=0)  # no limit
    ProducerConfig(endpoints=("tcp://h:1",), sample_timeout=2)  # local files only: any limit


def test_a_local_sample_is_read_whole_from_a_file_or_a_pipe(tmp_path: Path) -> None:
    """A regular file is read in one read of its size; a pipe (its size unknown: 0) is read on to
    its end."""
    data = os.urandom(300_000)
    (tmp_path / "file.jpg").write_bytes(data)
    (tmp_path / "empty.jpg").write_bytes(b"")
    reader = SampleReader(locator=SampleLocator(tmp_path))
    assert reader.read("file.jpg") == data
    assert reader.read("empty.jpg") == b""
    os.mkfifo(tmp_path / "pipe.jpg")
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; open(sys.argv[1], 'wb').write(bytes.fromhex(sys.argv[2]))",
            str(tmp_path / "pipe.jpg"),
            data[:3000].hex(),
        ]
    )
    try:
        assert reader.read("pipe.jpg") == data[:3000]
    finally:
        writer.wait(timeout=10)

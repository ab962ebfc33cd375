"""Feeds that read where the data lives: an S3-compatible server (moto) and nginx, started here.

Every test checks what users rely on: each sample exactly once per epoch, batches identical to
the same images read from local files, and clear bad-sample reports (URL and the store's reason)
for objects that are missing, denied, truncated, corrupt or behind a server that is down.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest

from bench.servers import MotoServer, Nginx
from tests.conftest import ID_SIZE, ids_of, remote_feed, start_producer, write_id_dataset
from zerofeed.common.errors import BadSampleError, ConfigError, FeedTimeoutError
from zerofeed.common.shards import INDEX_NAME
from zerofeed.consumer import FeedSequence
from zerofeed.pack import pack

COUNT = 60
AUGMENT = {"random_resized_crop": {"scale": [0.5, 1.0]}, "horizontal_flip": True}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 id images and their CSV (paths relative to the CSV's folder)."""
    return write_id_dataset(tmp_path_factory.mktemp("objects") / "ids", COUNT)


@pytest.fixture(scope="module")
def moto(dataset: Path) -> Iterator[MotoServer]:
    server = MotoServer()
    server.upload("bkt", dataset.parent, "ids/")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def aws(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """The server's credentials in this process's environment (and so the producers')."""
    for name, value in moto.credentials.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    return moto


@pytest.fixture(scope="module")
def web_root(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What nginx serves: the id images and a packed copy of them (``shards/``)."""
    root = tmp_path_factory.mktemp("www")
    shutil.copytree(dataset.parent, root / "ids")
    pack(str(dataset), str(root / "shards"), shard_size=4096)
    return root


@pytest.fixture(scope="module")
def nginx(web_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    try:
        server = Nginx(web_root, tmp_path_factory.mktemp("nginx"))
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.close()


def epoch_rows(seq: FeedSequence) -> list[int]:
    return [row for i in range(len(seq)) for row in ids_of(seq[i][0])]


def all_batches(seq: FeedSequence) -> list[np.ndarray]:
    return [np.array(seq[i][0]) for i in range(len(seq))]


def augmented_feed(source: object) -> FeedSequence:
    """The feed every identity check compares: same seed, batches and augmentation."""
    return FeedSequence(
        source,  # type: ignore[arg-type]
        image_size=ID_SIZE,
        batch_size=8,
        seed=5,
        augment=AUGMENT,
        local_producers=1,
        timeout=60,
    )


def local_reference(source: Path) -> list[np.ndarray]:
    with augmented_feed(source) as seq:
        return all_batches(seq)


# --------------------------------------------------------------------------- S3


def test_s3_manifest_and_images_exactly_once_identical_to_local_files(
    aws: MotoServer, dataset: Path
) -> None:
    reference = local_reference(dataset)
    with augmented_feed("s3://bkt/ids/manifest.csv") as seq:
        assert seq.manifest.paths[0] == "s3://bkt/ids/img/00000.png"
        got = all_batches(seq)
        assert len(got) == len(reference)
        for mine, theirs in zip(got, reference, strict=True):
            np.testing.assert_array_equal(mine, theirs)
        seq.on_epoch_end()
        assert Counter(epoch_rows(seq)) == Counter(range(COUNT))
        assert not seq.stats.skipped


@pytest.mark.parametrize("producers", [1, 3])
def test_remote_producers_read_s3_pairs_exactly_once(
    aws: MotoServer, dataset: Path, producers: int
) -> None:
    pairs = [(f"s3://bkt/ids/img/{row:05d}.png", row % 3) for row in range(COUNT)]
    with remote_feed(pairs, batch_size=7, seed=1) as seq:  # type: ignore[arg-type]
        started = [
            start_producer(seq.endpoint, dataset.parent, "--allow", "s3://bkt")
            for _ in range(producers)
        ]
        try:
            for _ in range(2):
                assert Counter(epoch_rows(seq)) == Counter(range(COUNT))
                seq.on_epoch_end()
        finally:
            for process in started:
                process.terminate()
                process.wait(20)


def test_wrong_keys_are_a_permission_bad_sample_naming_the_url(
    aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    pairs = [(f"s3://bkt/ids/img/{row:05d}.png", 0) for row in range(4)]
    with (
        FeedSequence(pairs, image_size=ID_SIZE, batch_size=4, local_producers=1) as seq,
        pytest.raises(BadSampleError) as caught,
    ):
        seq[0]
    assert caught.value.kind == "permission"
    assert caught.value.path.startswith("s3://bkt/ids/img/")
    assert "403" in caught.value.reason
    assert "not-the-secret" not in str(caught.value)


def test_missing_object_is_skipped_with_the_url_and_the_rest_delivered(aws: MotoServer) -> None:
    pairs = [(f"s3://bkt/ids/img/{row:05d}.png", 0) for row in range(8)]
    pairs[3] = ("s3://bkt/ids/img/nosuch.png", 0)
    with FeedSequence(
        pairs, image_size=ID_SIZE, batch_size=8, local_producers=1, on_error="skip"
    ) as seq:
        images, _ = seq[0]
        assert sorted(ids_of(images)) == [0, 1, 2, 4, 5, 6, 7]
        (skipped,) = seq.stats.skipped
    assert skipped.kind == "missing" and "nosuch.png" in skipped.path
    assert "404" in skipped.reason


def test_producer_without_leave_to_read_the_bucket_gets_no_work_and_says_so(
    aws: MotoServer, dataset: Path
) -> None:
    pairs = [(f"s3://bkt/ids/img/{row:05d}.png", 0) for row in range(8)]
    with remote_feed(pairs, batch_size=4, timeout=3) as seq:  # type: ignore[arg-type]
        process = start_producer(seq.endpoint, dataset.parent, "--allow", "s3://other")
        try:
            with pytest.raises(FeedTimeoutError, match=r"--allow s3://bkt"):
                seq[0]
            assert seq.stats.tasks_issued == 0
        finally:
            process.terminate()
            process.wait(20)


def test_stalled_store_is_a_clear_error_within_the_bound(aws: MotoServer, dataset: Path) -> None:
    pairs = [(f"s3://bkt/ids/img/{row:05d}.png", 0) for row in range(4)]
    with remote_feed(pairs, batch_size=4, timeout=30) as seq:  # type: ignore[arg-type]
        process = start_producer(
            seq.endpoint,
            dataset.parent,
            "--allow",
            "s3://bkt",
            "--store-timeout",
            "0.5",
            "--store-retry",
            "1.5",
        )
        aws.pause()
        started = time.monotonic()
        try:
            with pytest.raises(BadSampleError) as caught:
                seq[0]
        finally:
            aws.resume()
            process.terminate()
            process.wait(20)
    assert time.monotonic() - started < 20
    assert caught.value.kind == "unavailable"
    assert "retry window" in caught.value.reason


# --------------------------------------------------------------------------- shards


def test_pack_round_trip_locally_and_through_s3(
    aws: MotoServer, dataset: Path, tmp_path: Path
) -> None:
    summary = pack(str(dataset), str(tmp_path / "shards"), shard_size=4096)
    assert summary.samples == COUNT and summary.shards > 3
    index = (tmp_path / "shards" / INDEX_NAME).read_text().splitlines()
    assert index[0] == "path,label" and index[1].startswith("shard-000000.tar#")
    with tarfile.open(tmp_path / "shards" / "shard-000000.tar") as archive:
        assert archive.getnames()[:2] == ["000000000.png", "000000000.cls"]
    reference = local_reference(dataset)
    assert _batches_equal(local_reference(tmp_path / "shards"), reference)
    assert pack(str(dataset), "s3://bkt/packed/", shard_size=4096).shards == summary.shards
    with augmented_feed("s3://bkt/packed/") as seq:
        assert seq.manifest.paths[0].startswith("s3://bkt/packed/shard-000000.tar#")
        assert _batches_equal(all_batches(seq), reference)
        seq.on_epoch_end()
        assert Counter(epoch_rows(seq)) == Counter(range(COUNT))


def _batches_equal(mine: list[np.ndarray], theirs: list[np.ndarray]) -> bool:
    return len(mine) == len(theirs) and all(
        np.array_equal(a, b) for a, b in zip(mine, theirs, strict=True)
    )


def test_webdataset_tar_made_by_another_tool_is_indexed_on_first_read(
    dataset: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "wds"
    folder.mkdir()
    for shard in range(2):
        with tarfile.open(folder / f"train-{shard}.tar", "w") as archive:
            for row in range(shard * 30, shard * 30 + 30):
                data = (dataset.parent / f"img/{row:05d}.png").read_bytes()
                for name, payload in (
                    (f"sample{row:04d}.png", data),
                    (f"sample{row:04d}.json", json.dumps({"label": row % 4}).encode()),
                ):
                    info = tarfile.TarInfo(name)
                    info.size = len(payload)
                    archive.addfile(info, BytesIO(payload))
    with FeedSequence(folder, image_size=ID_SIZE, batch_size=8, local_producers=1) as seq:
        assert len(seq.manifest) == COUNT
        rows, labels = [], []
        for i in range(len(seq)):
            images, batch_labels = seq[i]
            rows += ids_of(images)
            labels += [int(v) for v in batch_labels]
    assert Counter(rows) == Counter(range(COUNT))
    assert labels == [row % 4 for row in rows]


def test_corrupt_member_and_truncated_shard_are_bad_samples(dataset: Path, tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    pack(str(dataset), str(shards), shard_size=10**9)
    lines = (shards / INDEX_NAME).read_text().splitlines()
    corrupt = lines[3].split(",")[0]  # row 2
    offset = int(corrupt.split("#")[1].split("+")[0])
    with open(shards / "shard-000000.tar", "r+b") as tar:
        tar.seek(offset)
        tar.write(b"\x00" * 64)  # the PNG's signature and header gone
    last = lines[-1].split(",")
    start, size = last[0].split("#")[1].split("+")
    lines[-1] = ",".join([f"shard-000000.tar#{start}+{int(size) + 10**6}", *last[1:]])
    (shards / INDEX_NAME).write_text("\n".join(lines) + "\n")
    with FeedSequence(
        shards, image_size=ID_SIZE, batch_size=COUNT, local_producers=1, on_error="skip"
    ) as seq:
        images, _ = seq[0]
        kinds = {s.path.split("#")[1].split("+")[0]: s.kind for s in seq.stats.skipped}
    assert sorted(ids_of(images)) == [r for r in range(COUNT) if r not in (2, COUNT - 1)]
    assert kinds == {str(offset): "decode", start: "truncated"}


# --------------------------------------------------------------------------- HTTP (nginx)


def test_http_shards_and_files_exactly_once_identical_to_local(nginx: Nginx, dataset: Path) -> None:
    reference = local_reference(dataset)
    for source in (f"{nginx.url}/shards/", f"{nginx.url}/ids/manifest.csv"):
        with augmented_feed(source) as seq:
            assert _batches_equal(all_batches(seq), reference), source
            seq.on_epoch_end()
            assert Counter(epoch_rows(seq)) == Counter(range(COUNT))


def test_http_403_is_a_permission_bad_sample(nginx: Nginx) -> None:
    pairs = [(f"{nginx.url}/forbidden/img/00000.png", 0)]
    with (
        FeedSequence(pairs, image_size=ID_SIZE, batch_size=1, local_producers=1) as seq,
        pytest.raises(BadSampleError) as caught,
    ):
        seq[0]
    assert caught.value.kind == "permission" and "403" in caught.value.reason


def test_server_stopped_mid_epoch_and_restarted_loses_nothing(nginx: Nginx, dataset: Path) -> None:
    with FeedSequence(
        f"{nginx.url}/shards/",
        image_size=ID_SIZE,
        batch_size=6,
        local_producers=1,
        max_queue_size=2,
        timeout=60,
    ) as seq:
        rows = ids_of(seq[0][0])
        nginx.stop()
        outage = threading.Timer(1.5, nginx.start)  # down for 1.5 s, inside the retry window
        outage.start()
        try:
            rows += [row for i in range(1, len(seq)) for row in ids_of(seq[i][0])]
        finally:
            outage.join()
        assert not seq.stats.skipped
    assert Counter(rows) == Counter(range(COUNT))


def test_cache_serves_the_next_epoch_with_the_server_down(
    nginx: Nginx, dataset: Path, tmp_path: Path
) -> None:
    with remote_feed(f"{nginx.url}/shards/", batch_size=10, seed=3) as seq:  # type: ignore[arg-type]
        process = start_producer(
            seq.endpoint,
            dataset.parent,
            "--allow",
            nginx.url,
            "--cache-dir",
            str(tmp_path / "cache"),
            "--cache-size",
            "64MiB",
        )
        try:
            assert Counter(epoch_rows(seq)) == Counter(range(COUNT))
            seq.on_epoch_end()
            nginx.stop()
            try:
                assert Counter(epoch_rows(seq)) == Counter(range(COUNT))
            finally:
                nginx.start()
        finally:
            process.terminate()
            process.wait(20)
    cached = [p for p in (tmp_path / "cache").rglob("*.bin")]
    assert len(cached) == COUNT


def test_credentials_from_the_shared_credentials_file(
    aws: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[training]\n"
        f"aws_access_key_id = {aws.credentials['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {aws.credentials['AWS_SECRET_ACCESS_KEY']}\n"
    )
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_PROFILE", "training")
    with FeedSequence(
        "s3://bkt/ids/manifest.csv", image_size=ID_SIZE, batch_size=COUNT, local_producers=1
    ) as seq:
        assert sorted(ids_of(seq[0][0])) == list(range(COUNT))


def test_producer_allowed_another_prefix_of_the_bucket_gets_no_work(
    aws: MotoServer, dataset: Path
) -> None:
    pairs = [(f"s3://bkt/ids/img/{row:05d}.png", 0) for row in range(4)]
    with remote_feed(pairs, batch_size=4, timeout=3) as seq:  # type: ignore[arg-type]
        process = start_producer(
            seq.endpoint, dataset.parent, "--allow", "s3://bkt/public/", capture_log=True
        )
        try:
            with pytest.raises(FeedTimeoutError, match=r"--allow s3://bkt/ids/img/"):
                seq[0]
            assert seq.stats.tasks_issued == 0 and not seq.stats.skipped
        finally:
            process.terminate()
            _, log = process.communicate(timeout=20)
    assert aws.credentials["AWS_SECRET_ACCESS_KEY"] not in log


def test_local_producers_cache_for_the_trainer(nginx: Nginx, tmp_path: Path) -> None:
    with FeedSequence(
        f"{nginx.url}/ids/manifest.csv",
        image_size=ID_SIZE,
        batch_size=COUNT,
        local_producers=1,
        cache_dir=tmp_path / "cache",
        cache_size="16MiB",
    ) as seq:
        assert sorted(ids_of(seq[0][0])) == list(range(COUNT))
        seq.on_epoch_end()
        nginx.stop()
        try:
            assert sorted(ids_of(seq[0][0])) == list(range(COUNT))
        finally:
            nginx.start()
    with pytest.raises(ConfigError, match="cache_size"):
        FeedSequence(f"{nginx.url}/ids/manifest.csv", cache_dir=tmp_path, cache_size="lots")


def test_remote_webdataset_tars_without_an_index(
    aws: MotoServer, nginx: Nginx, web_root: Path, dataset: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "wds"
    folder.mkdir()
    with tarfile.open(folder / "train-0.tar", "w") as archive:
        for row in range(COUNT):
            data = (dataset.parent / f"img/{row:05d}.png").read_bytes()
            for name, payload in (
                (f"s{row:04d}.png", data),
                (f"s{row:04d}.cls", b"%d" % (row % 2)),
            ):
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                archive.addfile(info, BytesIO(payload))
    aws.upload("bkt", folder, "wds/")
    shutil.copy(folder / "train-0.tar", web_root / "train-0.tar")
    for source in ("s3://bkt/wds/", f"{nginx.url}/train-0.tar"):
        with FeedSequence(source, image_size=ID_SIZE, batch_size=COUNT, local_producers=1) as seq:
            images, labels = seq[0]
        rows = ids_of(images)
        assert sorted(rows) == list(range(COUNT)), source
        assert [int(v) for v in labels] == [row % 2 for row in rows]

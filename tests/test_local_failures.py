"""Local producers that cannot work fail the feed within seconds, with their own words."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import ID_SIZE, wait_until, write_id_dataset
from zerofeed.consumer import ConfigError, FeedSequence, ProducerLostError

pytestmark = pytest.mark.usefixtures("no_leftover_processes")


def test_a_plugin_that_does_not_import_is_a_config_error_at_construction(tmp_path: Path) -> None:
    manifest = write_id_dataset(tmp_path, 8)
    with pytest.raises(ConfigError, match="Cannot import plugin module 'nosuchmod'"):
        FeedSequence(manifest, image_size=ID_SIZE, plugins=["nosuchmod"], local_producers=1)


@pytest.mark.parametrize(
    ("plugin", "said"),
    [
        ("tests.plugin_producer_only", "refuses to load in a producer"),  # the process exits
        ("tests.plugin_worker_crash", "keeps crashing at start"),  # its workers crash-loop
    ],
)
def test_producers_that_cannot_start_fail_getitem_within_seconds_with_their_message(
    tmp_path: Path, plugin: str, said: str
) -> None:
    manifest = write_id_dataset(tmp_path, 8)
    with FeedSequence(
        manifest,
        batch_size=4,
        image_size=ID_SIZE,
        augment={"custom": {"invert": {}}},
        plugins=[plugin],
        local_producers=1,
    ) as seq:  # no timeout: the failure must not wait for one
        started = time.monotonic()
        with pytest.raises(ProducerLostError, match=said) as caught:
            seq[0]
        assert time.monotonic() - started < 30
        assert "local producer process" in str(caught.value)
        assert "refuses to load" in str(caught.value), "the producer's own words"


def test_a_killed_local_producer_process_fails_the_feed_at_once(tmp_path: Path) -> None:
    manifest = write_id_dataset(tmp_path, 64)
    with FeedSequence(manifest, batch_size=4, image_size=ID_SIZE, local_producers=1) as seq:
        seq[0]
        pid = seq.feed.local_producers_pid
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        started = time.monotonic()

        def failed() -> bool:
            try:
                for index in range(len(seq)):
                    seq[index]
            except ProducerLostError as exc:
                assert "was killed by SIGKILL" in str(exc)
                return True
            seq.on_epoch_end()
            return False

        wait_until(failed, timeout=20)
        assert time.monotonic() - started < 20

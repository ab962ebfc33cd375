"""Ranks, as pure logic: the global plan's slices, the short last global batch, rank states, and
reading ``rank``/``world_size`` from a training framework's settings."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_engine import encode_rows, mock_feed, rows_of
from zerofeed.common.errors import ConfigError
from zerofeed.common.plan import EpochPlan, largest_batch, steps_per_epoch
from zerofeed.consumer import RankInfo, rank_and_world_size


def plans(num_samples: int, batch_size: int, world_size: int, **kw: object) -> list[EpochPlan]:
    return [
        EpochPlan(
            num_samples=num_samples,
            batch_size=batch_size,
            seed=5,
            epoch=2,
            shuffle=True,
            rank=rank,
            world_size=world_size,
            **kw,  # type: ignore[arg-type]
        )
        for rank in range(world_size)
    ]


@settings(max_examples=400, deadline=None)
@given(
    num_samples=st.integers(min_value=1, max_value=500),
    batch_size=st.integers(min_value=1, max_value=40),
    world_size=st.integers(min_value=1, max_value=9),
)
def test_rank_slices_cover_the_one_trainer_plan_exactly_once_with_equal_steps(
    num_samples: int, batch_size: int, world_size: int
) -> None:
    if num_samples < world_size:
        with pytest.raises(ConfigError, match="cannot be shared"):
            plans(num_samples, batch_size, world_size)
        return
    ranked = plans(num_samples, batch_size, world_size)
    single = plans(num_samples, batch_size * world_size, 1)[0]
    steps = len(ranked[0])
    assert (
        {len(plan) for plan in ranked}
        == {steps}
        == {steps_per_epoch(num_samples, batch_size, world_size)}
    )
    slices = [[plan.batch(step) for plan in ranked] for step in range(steps)]
    # Every rank has at least one sample every step; slices differ by at most one sample.
    for step in slices:
        sizes = [len(part) for part in step]
        assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
        assert max(sizes) <= largest_batch(num_samples, batch_size, world_size)
    order = [int(row) for step in slices for part in step for row in part]
    assert Counter(order) == Counter(range(num_samples))
    single_order = [int(row) for i in range(len(single)) for row in single.batch(i)]
    assert order == single_order  # independent of world size: the same samples, same order
    # Step by step the global batches are the one trainer's, but for a short last global batch
    # with fewer samples than ranks, which joins the step before.
    merged = len(single) - steps
    assert merged in (0, 1)
    last = num_samples - (len(single) - 1) * batch_size * world_size
    assert merged == (1 if len(single) > 1 and last < world_size else 0)
    for step in range(steps - merged):
        assert np.array_equal(np.concatenate(slices[step]), single.batch(step))
        assert np.array_equal(ranked[0].global_batch(step), single.batch(step))


def test_the_short_last_global_batch_policy_in_numbers() -> None:
    # 37 samples, batch 4, 3 ranks: global batches of 12; the last would hold 1 < 3 samples.
    assert steps_per_epoch(37, 4, 3) == 3 and largest_batch(37, 4, 3) == 5
    assert [len(plan.batch(2)) for plan in plans(37, 4, 3)] == [4, 4, 5]
    # 37 samples, batch 4, 2 ranks: the last global batch of 5 is split 2 + 3.
    assert steps_per_epoch(37, 4, 2) == 5 and largest_batch(37, 4, 2) == 4
    assert [len(plan.batch(4)) for plan in plans(37, 4, 2)] == [2, 3]
    # Fewer samples than one global batch: one step, shared.
    assert [len(plan.batch(0)) for plan in plans(5, 4, 3)] == [1, 2, 2]


@pytest.mark.parametrize(
    ("rank", "world_size", "match"),
    [
        (2, 2, "rank must be in"),
        (-1, 2, "rank must be in"),
        (0, 0, "rank must be in"),
        (True, 2, "whole number"),
        (0.5, 2, "whole number"),
    ],
)
def test_bad_ranks_are_refused(rank: object, world_size: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        EpochPlan(
            num_samples=10,
            batch_size=2,
            seed=0,
            epoch=0,
            shuffle=False,
            rank=rank,
            world_size=world_size,  # type: ignore[arg-type]
        )


def test_a_rank_feed_serves_its_slice_and_needs_a_seed(tmp_path: Path) -> None:
    with mock_feed(tmp_path, rank=1, world_size=2) as feed:
        plan = feed.recipe.plan(0)
        batch = feed.get(0, 0)
        assert rows_of(batch.images) == plan.batch(0).tolist() == batch.rows.tolist()
        assert plan.rank == 1 and len(feed) == len(plan)
        assert feed.status()["rank"] == 1 and feed.status()["world_size"] == 2
    from tests.test_engine import pairs
    from zerofeed.consumer import DataConfig, Feed, MockTransport

    with pytest.raises(ConfigError, match="needs a seed"):
        Feed(
            pairs(tmp_path),
            data=DataConfig(rank=0, world_size=2),
            transport=MockTransport(encode_rows),
        )


def test_a_state_restores_only_into_its_own_rank_of_a_job_of_its_size(tmp_path: Path) -> None:
    with mock_feed(tmp_path, rank=1, world_size=2) as saver:
        state = saver.state((1, 2))
    with mock_feed(tmp_path, rank=1, world_size=2) as same:
        assert same.restore(state) == (1, 2)
    for rank, world_size in ((0, 2), (1, 3), (0, 1)):
        with (
            mock_feed(tmp_path, rank=rank, world_size=world_size) as other,
            pytest.raises(ConfigError, match="another rank") as error,
        ):
            other.restore(state)
        assert "rank: saved 1" in str(error.value) or "world_size: saved 2" in str(error.value)


def test_a_state_from_before_ranks_restores_as_rank_0_of_1(tmp_path: Path) -> None:
    with mock_feed(tmp_path) as feed:
        state = feed.state((0, 3))
        del state["fingerprint"]["rank"], state["fingerprint"]["world_size"]
        assert feed.restore(state) == (0, 3)


TF_CONFIG = {"cluster": {"chief": ["h0:1"], "worker": ["h1:1", "h2:1"]}}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, RankInfo(0, 1)),
        (
            {"ZEROFEED_RANK": "2", "ZEROFEED_WORLD_SIZE": "4", "RANK": "0", "WORLD_SIZE": "1"},
            RankInfo(2, 4, "ZEROFEED_RANK/ZEROFEED_WORLD_SIZE"),
        ),
        ({"RANK": "1", "WORLD_SIZE": "2"}, RankInfo(1, 2, "RANK/WORLD_SIZE")),
        (
            {"TF_CONFIG": json.dumps({**TF_CONFIG, "task": {"type": "chief", "index": 0}})},
            RankInfo(0, 3, "TF_CONFIG"),
        ),
        (
            {"TF_CONFIG": json.dumps({**TF_CONFIG, "task": {"type": "worker", "index": 1}})},
            RankInfo(2, 3, "TF_CONFIG"),
        ),
        (
            {
                "TF_CONFIG": json.dumps(
                    {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}
                )
            },
            RankInfo(1, 2, "TF_CONFIG"),
        ),
    ],
)
def test_rank_and_world_size_from_the_framework(
    environ: dict[str, str], expected: RankInfo
) -> None:
    info = rank_and_world_size(environ)
    assert info == expected
    rank, world_size = info
    assert (rank, world_size) == (expected.rank, expected.world_size)


@pytest.mark.parametrize(
    ("environ", "match"),
    [
        ({"RANK": "one", "WORLD_SIZE": "2"}, "whole numbers"),
        ({"ZEROFEED_RANK": "1"}, "ZEROFEED_WORLD_SIZE is not"),
        ({"WORLD_SIZE": "2"}, "RANK is not"),
        ({"RANK": "2", "WORLD_SIZE": "2"}, "from 0 to world size - 1"),
        ({"TF_CONFIG": "{not json"}, "not a cluster spec"),
        (
            {"TF_CONFIG": json.dumps({**TF_CONFIG, "task": {"type": "evaluator", "index": 0}})},
            "not one of the cluster's trainers",
        ),
    ],
)
def test_malformed_framework_settings_are_clear_errors(environ: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        rank_and_world_size(environ)


def test_a_distributed_dataset_refuses_a_strategy_of_another_size(tmp_path: Path) -> None:
    tf = pytest.importorskip("tensorflow")
    from tests.test_engine import pairs
    from zerofeed.consumer import FeedSequence, MockTransport

    with (
        FeedSequence(
            pairs(tmp_path),
            batch_size=2,
            image_size=(8, 8),
            seed=1,
            rank=1,
            world_size=2,
            transport=MockTransport(encode_rows),
        ) as train,
        pytest.raises(ConfigError, match="rank 1 of 2, but the strategy has 1"),
    ):
        train.as_distributed_dataset(tf.distribute.OneDeviceStrategy("/cpu:0"))

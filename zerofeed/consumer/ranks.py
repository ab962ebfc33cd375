"""Which rank a trainer is, read from where its training framework says it.

A helper, not a default: the feed never guesses its rank. Call it once at the start of a
data-parallel job and pass what it returns::

    rank, world_size = rank_and_world_size()
    train = FeedSequence("data/train.csv", ..., seed=0, rank=rank, world_size=world_size)

Sources, first match wins:

1. ``ZEROFEED_RANK`` and ``ZEROFEED_WORLD_SIZE`` (e.g. from a Kubernetes indexed Job's
   completion index);
2. ``RANK`` and ``WORLD_SIZE``, as ``torchrun`` and torch's launchers set them;
3. ``TF_CONFIG``, as ``tf.distribute.MultiWorkerMirroredStrategy`` reads it: the ``chief`` (if
   any) is rank 0, then the ``worker`` tasks in order;
4. ``keras.distribution`` under the JAX backend, once ``keras.distribution.initialize`` has run:
   JAX's process index and count.

Nothing found is rank 0 of 1.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from zerofeed.common.errors import ConfigError

__all__ = ["RankInfo", "rank_and_world_size"]

_TRAINER_ROLES = ("chief", "worker")


@dataclass(frozen=True)
class RankInfo:
    """A trainer's ``rank`` of ``world_size``, and where they were read (``source``).

    It unpacks as ``rank, world_size = rank_and_world_size()``.
    """

    rank: int
    world_size: int
    source: str = "none"

    def __iter__(self) -> Iterator[int]:
        return iter((self.rank, self.world_size))


def rank_and_world_size(environ: Mapping[str, str] | None = None) -> RankInfo:
    """This process's rank and world size, from the first source that names them.

    Args:
        environ: the environment to read (default: ``os.environ``).

    Raises:
        ConfigError: a source is there but malformed (not whole numbers, a rank outside
            ``0..world_size-1``, a ``TF_CONFIG`` task that is not a trainer).
    """
    env = os.environ if environ is None else environ
    for rank_name, size_name in (("ZEROFEED_RANK", "ZEROFEED_WORLD_SIZE"), ("RANK", "WORLD_SIZE")):
        if rank_name in env and size_name in env:
            return _checked(env[rank_name], env[size_name], f"{rank_name}/{size_name}")
        if (rank_name in env) != (size_name in env):
            given, missing = (rank_name, size_name) if rank_name in env else (size_name, rank_name)
            raise ConfigError(
                f"{given} is set but {missing} is not: set both, or neither (one alone would "
                "silently make every trainer rank 0 of 1)"
            )
    if env.get("TF_CONFIG"):
        return _from_tf_config(env["TF_CONFIG"])
    keras_info = _from_keras_distribution()
    return keras_info if keras_info is not None else RankInfo(0, 1)


def _checked(rank: object, world_size: object, source: str) -> RankInfo:
    try:
        info = RankInfo(int(str(rank)), int(str(world_size)), source)
    except ValueError:
        raise ConfigError(
            f"{source} must be whole numbers, got rank {rank!r} and world size {world_size!r}"
        ) from None
    if info.world_size < 1 or not 0 <= info.rank < info.world_size:
        raise ConfigError(
            f"{source} gives rank {info.rank} of {info.world_size}; a rank runs from 0 to "
            "world size - 1"
        )
    return info


def _from_tf_config(text: str) -> RankInfo:
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        role, index = task["type"], int(task["index"])
        trainers = [(name, i) for name in _TRAINER_ROLES for i in range(len(cluster.get(name, [])))]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"TF_CONFIG is not a cluster spec with a task (e.g. "
            f'{{"cluster": {{"worker": [...]}}, "task": {{"type": "worker", "index": 0}}}}): '
            f"{exc!r}"
        ) from None
    if (role, index) not in trainers:
        raise ConfigError(
            f"TF_CONFIG's task is {role} {index}, not one of the cluster's trainers "
            f"({', '.join(_TRAINER_ROLES)}); only trainers read a feed"
        )
    return _checked(trainers.index((role, index)), len(trainers), "TF_CONFIG")


def _from_keras_distribution() -> RankInfo | None:
    """JAX's process index and count, when Keras' distribution API has set up several."""
    keras = sys.modules.get("keras")
    if keras is None or keras.backend.backend() != "jax":
        return None
    if keras.distribution.distribution() is None:
        return None
    import jax

    if jax.process_count() <= 1:
        return None
    return _checked(jax.process_index(), jax.process_count(), "keras.distribution (JAX processes)")

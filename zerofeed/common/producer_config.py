"""Producer settings: one keyword-only dataclass, and the command line that carries it.

It lives in ``common`` because it is a contract between two sides: ``zerofeed producer`` parses its
command line into a :class:`ProducerConfig` (:mod:`zerofeed.producer.cli`), and a feed that starts
local producers writes one with :meth:`ProducerConfig.to_argv` (:mod:`zerofeed.consumer.local`).
Every field has exactly one flag, named after it (``_FLAG_NAMES`` lists the exceptions), and
the field's default is the flag's default: a test parses ``to_argv()`` back into an equal config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zerofeed.common.errors import ConfigError
from zerofeed.common.locations import AllowList
from zerofeed.common.storage import StoreOptions

__all__ = ["LOG_LEVELS", "ProducerConfig", "default_of"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

#: Fields whose flag is not ``--`` plus the field name with dashes: repeatable flags take the
#: singular, and ``slots`` is three flags (``--slots PATH --slot-bytes N --slot-count N``).
_FLAG_NAMES = {"endpoints": "--connect", "plugins": "--plugin", "allow": "--allow"}


@dataclass(frozen=True, kw_only=True)
class ProducerConfig:
    """How a producer connects and works.

    Attributes:
        endpoints: the consumers' ZeroMQ endpoints, e.g. ``("tcp://trainer:5555",)``; one per
            trainer rank when several share this producer (each worker connects to all of them).
        workers: worker processes, each with its own connections.
        max_workers: grow to this many workers, one at a time, while each added one raises the
            images made per second (on a machine where other jobs hold cores, one more worker
            than cores gets a fairer share of them; see :mod:`zerofeed.producer.sizing`);
            0 keeps ``workers``.
        data_root: folder that relative sample paths resolve against; when set, paths that resolve
            outside it are refused.
        plugins: modules that define custom transforms (``ZEROFEED_TRANSFORMS``).
        prefetch: tasks a worker holds at once (one in progress, the rest queued).
        heartbeat_interval: seconds between heartbeats to the consumer.
        reconnect_after: seconds without a word from the consumer before reconnecting.
        silence_warning: seconds a connection waits for the consumer's ``WELCOME`` before the
            worker logs why none came (nothing listening, a failed handshake, a silent peer).
        sample_timeout: seconds one sample may take before it is reported as a bad sample
            (kind ``"timeout"``); 0 turns the limit off.
        max_pixels: images with more pixels are refused (kind ``"too_large"``), before decoding:
            Pillow's decompression-bomb limit.
        server_key: the consumer's public CURVE key file (turns on authentication and encryption).
        secret_key: this producer's ``.key_secret`` file; needed with ``server_key``.
        report_interval: seconds between the workers' throughput reports in the log (also on
            SIGUSR1); 0 reports only on request.
        metrics_port: serve Prometheus metrics, worker ``i`` on ``metrics_port + i``
            (``zerofeed[metrics]`` extra).
        exit_with_consumer: exit once every consumer served has gone away (silent for
            ``reconnect_after``) and no other endpoint has a consumer being served, instead of
            waiting for the next one (for one-shot jobs such as ``docker compose up``). A
            consumer that restarts later than that is not found again.
        exit_with_parent: stop when standard input closes (used for local producers).
        name: prefix for the producer's name in logs; default ``host:pid``.
        slots: the consumer's shared-memory slot file, ``(path, slot bytes, slot count)``: tasks
            that name a slot are written there instead of sent (local producers only).
        allow: object URL prefixes this producer may read (``s3://bucket``,
            ``https://host/prefix/``, or ``s3://`` for any bucket); none: local files only.
        cache_dir: an on-disk cache of remote reads, shared by the node's workers.
        cache_size: the cache's budget in bytes (with ``cache_dir``).
        store_timeout: seconds one request to an object store may take.
        store_retry: seconds transient store failures are retried before a read fails
            (kind ``"unavailable"``).
        log_level: the producer's logging level (``DEBUG``, ``INFO``, ``WARNING``, ``ERROR``).
    """

    endpoints: tuple[str, ...]
    workers: int = 1
    max_workers: int = 0
    data_root: Path | None = None
    plugins: tuple[str, ...] = ()
    prefetch: int = 2
    heartbeat_interval: float = 1.0
    reconnect_after: float = 10.0
    silence_warning: float = 5.0
    sample_timeout: float = 30.0
    max_pixels: int = 89_478_485
    server_key: Path | None = None
    secret_key: Path | None = None
    report_interval: float = 5.0
    metrics_port: int | None = None
    exit_with_consumer: bool = False
    exit_with_parent: bool = False
    name: str | None = None
    slots: tuple[Path, int, int] | None = None
    allow: tuple[str, ...] = ()
    cache_dir: Path | None = None
    cache_size: int = 10 * 2**30
    store_timeout: float = 10.0
    store_retry: float = 15.0
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        if isinstance(self.endpoints, str) or not self.endpoints:
            raise ConfigError(
                f"endpoints must be a non-empty tuple of addresses, got {self.endpoints!r}"
            )
        for endpoint in self.endpoints:
            if "://" not in endpoint:
                raise ConfigError(
                    f"endpoint {endpoint!r} is not a ZeroMQ address; expected e.g. "
                    "tcp://trainer:5555 or ipc:///tmp/zerofeed/feed.sock"
                )
        if len(set(self.endpoints)) != len(self.endpoints):
            raise ConfigError(f"an endpoint is given twice: {', '.join(self.endpoints)}")
        if self.slots is not None and len(self.endpoints) != 1:
            raise ConfigError("shared-memory slots serve one consumer; give one endpoint")
        for name, low in (("workers", 1), ("prefetch", 1)):
            if getattr(self, name) < low:
                raise ConfigError(f"{name} must be at least {low}, got {getattr(self, name)}")
        if self.max_workers and self.max_workers < self.workers:
            raise ConfigError(
                f"max_workers ({self.max_workers}) must be 0 (no growing) or at least workers "
                f"({self.workers})"
            )
        if self.heartbeat_interval <= 0 or self.reconnect_after <= self.heartbeat_interval:
            raise ConfigError(
                "heartbeat_interval must be positive and reconnect_after larger than it, got "
                f"{self.heartbeat_interval} and {self.reconnect_after}"
            )
        if self.sample_timeout < 0 or self.max_pixels < 1:
            raise ConfigError(
                f"sample_timeout must be >= 0 and max_pixels >= 1, got {self.sample_timeout} "
                f"and {self.max_pixels}"
            )
        if (self.server_key is None) != (self.secret_key is None):
            raise ConfigError(
                "CURVE needs both --server-key (the consumer's public .key) and --secret-key "
                "(this producer's .key_secret); make them with `zerofeed keys generate DIR`"
            )
        AllowList(self.allow)  # raises ConfigError for an entry that is not a URL prefix
        StoreOptions(request_timeout=self.store_timeout, retry_seconds=self.store_retry)
        reads_for = self.store_retry + self.store_timeout
        if self.allow and self.sample_timeout and self.sample_timeout <= reads_for:
            raise ConfigError(
                f"sample_timeout ({self.sample_timeout:g} s) must exceed store_retry + "
                f"store_timeout ({reads_for:g} s): otherwise a store outage the retries would "
                "ride out ends samples as timeouts; raise --sample-timeout or lower --store-retry"
            )
        if self.cache_size < 1 << 20:
            raise ConfigError(f"cache_size must be at least 1 MiB, got {self.cache_size} bytes")
        if self.data_root is not None and not self.data_root.is_dir():
            raise ConfigError(f"data root {str(self.data_root)!r} is not a directory")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(
                f"log_level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}"
            )

    def to_argv(self) -> list[str]:
        """The ``zerofeed producer`` arguments that parse back into this config (every field
        spelled out, so that no ``ZEROFEED_*`` variable or CLI default can change it)."""
        argv: list[str] = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            flag = _FLAG_NAMES.get(field.name, "--" + field.name.replace("_", "-"))
            if field.name == "slots":
                if value is not None:
                    path, slot_bytes, count = value
                    argv += [flag, str(path), "--slot-bytes", str(slot_bytes)]
                    argv += ["--slot-count", str(count)]
            elif isinstance(value, tuple):
                for item in value:
                    argv += [flag, str(item)]
            elif isinstance(value, bool):
                if value:
                    argv.append(flag)
            elif value is not None:
                argv += [flag, str(value)]
        return argv


def default_of(field_name: str) -> Any:
    """The default of ``field_name`` in :class:`ProducerConfig`: the CLI's default too."""
    for field in dataclasses.fields(ProducerConfig):
        if field.name == field_name:
            if field.default is dataclasses.MISSING:
                raise KeyError(f"{field_name} has no default")
            return field.default
    raise KeyError(field_name)

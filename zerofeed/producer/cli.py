"""``zerofeed producer``: the command line, the only place producers read ``ZEROFEED_*`` variables."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from zerofeed.common.errors import ConfigError
from zerofeed.common.producer_config import LOG_LEVELS, ProducerConfig, default_of
from zerofeed.common.sizes import size_argument
from zerofeed.producer.supervisor import Supervisor

__all__ = ["build_parser", "config_from_args", "main"]

_LOG_FORMAT = "%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s"


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    """The producer's argument parser; each option defaults to its ``ZEROFEED_*`` variable."""

    def env(name: str, default: str) -> str:
        return environ.get(f"ZEROFEED_{name}", default)

    def optional(name: str) -> str | None:
        return environ.get(f"ZEROFEED_{name}")

    parser = argparse.ArgumentParser(
        prog="zerofeed producer",
        description="Decode and augment images for a zerofeed consumer (a FeedSequence). "
        "Every option can also be set with the ZEROFEED_* variable named in its help.",
    )
    connect = optional("CONNECT")
    parser.add_argument(
        "--connect",
        action="append",
        required=connect is None,
        metavar="ENDPOINT",
        help="consumer endpoint, e.g. tcp://trainer:5555; repeat it to serve several consumers "
        "(one per trainer rank) [ZEROFEED_CONNECT, a comma-separated list]",
    )
    parser.set_defaults(connect_default=connect)
    parser.add_argument(
        "--workers",
        type=int,
        default=env("WORKERS", str(os.cpu_count() or 1)),
        help="worker processes (default: CPU count) [ZEROFEED_WORKERS]",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=optional("DATA_ROOT"),
        help="folder that manifest paths are relative to; paths outside it are "
        "refused [ZEROFEED_DATA_ROOT]",
    )
    parser.add_argument(
        "--plugin",
        action="append",
        dest="plugins",
        metavar="MODULE",
        default=[p for p in env("PLUGINS", "").split(",") if p],
        help="module defining ZEROFEED_TRANSFORMS; repeatable [ZEROFEED_PLUGINS, comma-separated]",
    )
    parser.add_argument(
        "--allow",
        action="append",
        metavar="URL",
        default=[a.strip() for a in env("ALLOW", "").split(",") if a.strip()],
        help="object URLs this producer may read: s3://BUCKET, s3://BUCKET/PREFIX/, "
        "https://HOST[:PORT][/PREFIX/], or s3:// for any bucket; repeatable (default: local "
        "files only) [ZEROFEED_ALLOW, comma-separated]",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=optional("CACHE_DIR"),
        help="keep remote reads in this folder, shared by the node's workers [ZEROFEED_CACHE_DIR]",
    )
    parser.add_argument(
        "--cache-size",
        type=size_argument,
        default=env("CACHE_SIZE", str(default_of("cache_size"))),
        help=f"the cache's budget, e.g. 500MB or 20GiB (default {default_of('cache_size') / 2**30:g}"
        "GiB) [ZEROFEED_CACHE_SIZE]",
    )
    numeric: list[tuple[str, type, str]] = [
        (
            "max_workers",
            int,
            "grow to this many workers while each added one raises images/s, e.g. on a machine "
            "other jobs share (0: keep --workers)",
        ),
        ("prefetch", int, "tasks each worker holds at once"),
        ("heartbeat_interval", float, "seconds between heartbeats"),
        ("reconnect_after", float, "seconds of consumer silence before reconnecting"),
        (
            "silence_warning",
            float,
            "seconds a connection waits for the consumer's answer before logging why none came",
        ),
        (
            "sample_timeout",
            float,
            "seconds one image may take before it is reported as a bad sample (0: no limit)",
        ),
        ("max_pixels", int, "images with more pixels are refused before decoding"),
        ("store_timeout", float, "seconds one request to an object store may take"),
        (
            "store_retry",
            float,
            "seconds transient object-store failures are retried before a read fails "
            "(with --store-timeout, under --sample-timeout)",
        ),
        (
            "report_interval",
            float,
            "seconds between throughput reports in the log, also "
            "sent on SIGUSR1 (0: on request only)",
        ),
    ]
    for field, kind, text in numeric:
        variable = field.upper()
        default = default_of(field)
        # argparse converts string defaults with `type`, so a bad variable is a clean usage error.
        parser.add_argument(
            "--" + field.replace("_", "-"),
            type=kind,
            default=env(variable, str(default)),
            help=f"{text} (default {default}) [ZEROFEED_{variable}]",
        )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=optional("METRICS_PORT"),
        help="serve Prometheus metrics, worker i on PORT+i (needs zerofeed[metrics]) "
        "[ZEROFEED_METRICS_PORT]",
    )
    parser.add_argument(
        "--server-key",
        type=Path,
        default=optional("SERVER_KEY"),
        help="the consumer's public CURVE key file; with --secret-key, turns on authentication "
        "and encryption [ZEROFEED_SERVER_KEY]",
    )
    parser.add_argument(
        "--secret-key",
        type=Path,
        default=optional("SECRET_KEY"),
        help="this producer's .key_secret file [ZEROFEED_SECRET_KEY]",
    )
    parser.add_argument(
        "--name",
        default=optional("NAME"),
        help="name shown in the consumer's logs (default host:pid) [ZEROFEED_NAME]",
    )
    parser.add_argument(
        "--log-level",
        default=env("LOG_LEVEL", default_of("log_level")),
        choices=LOG_LEVELS,
        help="[ZEROFEED_LOG_LEVEL]",
    )
    parser.add_argument(
        "--exit-with-consumer",
        action="store_true",
        default=env("EXIT_WITH_CONSUMER", "") not in ("", "0", "false", "no"),
        help="exit once every consumer served has gone (silent for --reconnect-after), instead "
        "of waiting for the next one [ZEROFEED_EXIT_WITH_CONSUMER=1]",
    )
    parser.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    # Set by FeedSequence for its local producers: the consumer's shared-memory batch slots.
    parser.add_argument("--slots", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--slot-bytes", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--slot-count", type=int, default=0, help=argparse.SUPPRESS)
    return parser


def config_from_args(args: argparse.Namespace) -> ProducerConfig:
    """The :class:`ProducerConfig` described by parsed arguments."""
    return ProducerConfig(
        endpoints=tuple(args.connect) if args.connect else _endpoints(args.connect_default or ""),
        workers=args.workers,
        max_workers=args.max_workers,
        data_root=args.data_root,
        plugins=tuple(args.plugins),
        prefetch=args.prefetch,
        heartbeat_interval=args.heartbeat_interval,
        reconnect_after=args.reconnect_after,
        silence_warning=args.silence_warning,
        sample_timeout=args.sample_timeout,
        max_pixels=args.max_pixels,
        report_interval=args.report_interval,
        metrics_port=args.metrics_port,
        server_key=args.server_key,
        secret_key=args.secret_key,
        exit_with_consumer=args.exit_with_consumer,
        exit_with_parent=args.exit_with_parent,
        name=args.name,
        slots=(args.slots, args.slot_bytes, args.slot_count) if args.slots else None,
        allow=tuple(args.allow),
        cache_dir=args.cache_dir,
        cache_size=args.cache_size,
        store_timeout=args.store_timeout,
        store_retry=args.store_retry,
        log_level=args.log_level,
    )


def _endpoints(value: str) -> tuple[str, ...]:
    """The endpoints of ``ZEROFEED_CONNECT``, a comma-separated list (``--connect`` repeats
    instead: an ipc path may hold a comma)."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run a producer until SIGTERM/SIGINT; returns the exit code."""
    parser = build_parser(os.environ if environ is None else environ)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format=_LOG_FORMAT, stream=sys.stderr)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        parser.error(str(exc))
    # The supervisor loads plugins and key files once before any worker starts: a mistake
    # there is one clear error and a non-zero exit, not workers restarted for ever.
    return Supervisor(config).run()

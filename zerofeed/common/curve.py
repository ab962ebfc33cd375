"""CurveZMQ keys: generating them (``zerofeed keys generate``) and loading them.

Keys are files in pyzmq's certificate format (``zmq.auth``): ``NAME.key`` holds a public key,
``NAME.key_secret`` the public and the secret key. The consumer has a secret key file and a folder
of the public keys of the producers it accepts; a producer has its own secret key file and the
consumer's public key file.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from zerofeed.common.errors import ConfigError

__all__ = ["KeyPair", "generate", "load_authorized", "load_public", "load_secret", "main"]


@dataclass(frozen=True)
class KeyPair:
    """A CurveZMQ key pair (Z85-encoded, as ZeroMQ's socket options take them)."""

    public: bytes
    secret: bytes


def _require_curve() -> None:
    if not zmq.has("curve"):
        raise ConfigError(
            "this libzmq has no CURVE support; install pyzmq from its wheels (which bundle it)"
        )


def generate(folder: Path, name: str) -> tuple[Path, Path]:
    """Write ``folder/name.key`` (public) and ``folder/name.key_secret`` (mode 0600)."""
    _require_curve()
    folder.mkdir(parents=True, exist_ok=True)
    for existing in (folder / f"{name}.key", folder / f"{name}.key_secret"):
        if existing.exists():
            raise ConfigError(f"{existing} exists already; choose another --name or folder")
    public, secret = zmq.auth.create_certificates(folder, name)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)


def load_secret(path: Path) -> KeyPair:
    """The key pair in a ``.key_secret`` file."""
    _require_curve()
    public, secret = _load(path)
    if secret is None:
        raise ConfigError(
            f"{path} holds no secret key; pass the .key_secret file written by "
            "`zerofeed keys generate`, not the public .key file"
        )
    return KeyPair(public, secret)


def load_public(path: Path) -> bytes:
    """The public key in a ``.key`` (or ``.key_secret``) file."""
    _require_curve()
    return _load(path)[0]


def load_authorized(folder: Path) -> frozenset[bytes]:
    """The public keys of every ``*.key`` file in ``folder``."""
    if not folder.is_dir():
        raise ConfigError(f"authorized_keys {str(folder)!r} is not a folder of public .key files")
    return frozenset(_load(path)[0] for path in sorted(folder.glob("*.key")))


def _load(path: Path) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read a CURVE key from {str(path)!r}: {exc}") from None
    return public, secret


def main(argv: Sequence[str] | None = None) -> int:
    """``zerofeed keys generate DIR [--name NAME]``."""
    parser = argparse.ArgumentParser(
        prog="zerofeed keys",
        description="Make CURVE key pairs: one for the consumer (the trainer), one per producer "
        "(or one shared by a fleet). Copy each producer's public .key into the consumer's "
        "authorized folder, and the consumer's public .key to the producers.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("generate", help="write NAME.key and NAME.key_secret into DIR")
    make.add_argument("folder", type=Path, metavar="DIR")
    make.add_argument("--name", default="zerofeed", help="file name stem (default: zerofeed)")
    args = parser.parse_args(argv)
    try:
        public, secret = generate(args.folder, args.name)
    except ConfigError as exc:
        parser.error(str(exc))
    sys.stdout.write(f"public key: {public}\nsecret key: {secret} (keep it private)\n")
    return 0

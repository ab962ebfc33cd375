"""The one exception tree of zerofeed.

::

    ZerofeedError
    ├── ConfigError          a setting or argument is invalid (raised before anything starts)
    ├── ManifestError        a data source (CSV, directory, pairs) cannot be read as a manifest
    ├── BadSampleError       a sample could not be read, decoded or transformed (on_error="raise")
    ├── ProtocolError        a message does not follow the wire protocol; it is rejected
    ├── ProducerLostError    a producer stopped answering; its tasks were handed to others
    └── FeedTimeoutError     no batch arrived within the configured timeout

Callers catch :class:`ZerofeedError` to handle them all.
"""

from __future__ import annotations

__all__ = [
    "BadSampleError",
    "ConfigError",
    "FeedTimeoutError",
    "ManifestError",
    "ProducerLostError",
    "ProtocolError",
    "ZerofeedError",
]


class ZerofeedError(Exception):
    """Base class of every error zerofeed raises on purpose."""


class ConfigError(ZerofeedError, ValueError):
    """A setting or argument is invalid; the message says which, what was expected and how to fix it."""


class ManifestError(ZerofeedError, ValueError):
    """A data source could not be turned into a list of samples."""


class BadSampleError(ZerofeedError):
    """A sample could not be read, decoded or transformed.

    Attributes:
        path: the sample's path as written in the manifest.
        kind: a short machine-readable reason (``"missing"``, ``"unreadable"``, ``"decode"``, ...).
        reason: the human-readable message from the producer.
    """

    def __init__(self, path: str, kind: str, reason: str, *, producer: str | None = None) -> None:
        where = f" (reported by producer {producer})" if producer else ""
        super().__init__(
            f"Bad sample {path!r}: {kind}: {reason}{where}. Fix or remove the file, or pass "
            f'on_error="skip" to drop bad samples from their batch and list them in `stats.skipped`.'
        )
        self.path = path
        self.kind = kind
        self.reason = reason
        self.producer = producer


class ProtocolError(ZerofeedError, ValueError):
    """A message does not follow the zerofeed wire protocol (see ``docs/protocol.md``)."""


class ProducerLostError(ZerofeedError):
    """A producer stopped answering within its lease; its tasks are re-issued to others."""


class FeedTimeoutError(ZerofeedError, TimeoutError):
    """No batch arrived within the configured ``timeout``."""

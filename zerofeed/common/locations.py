"""Where a sample lives, as text: a local path, an object URL, or a member of a tar shard.

A manifest path is one of:

- a **local path** (``class_a/1.jpg``, ``/data/img/1.jpg``), read from the producer's disk;
- an **object URL**: ``s3://bucket/key`` (any S3-compatible store) or ``http(s)://host/path``;
- a **shard member**: ``CONTAINER#OFFSET+SIZE``, the ``SIZE`` bytes at ``OFFSET`` of a ``.tar``
  shard named by a local path or a URL (``s3://bucket/shards/shard-000003.tar#1536+90210``), as
  written by ``zerofeed pack`` in a shard index.

This module only parses and checks such text (no network, no files), so the consumer, the
producers and ``zerofeed pack`` agree on it. :class:`AllowList` is the producer's
``--allow s3://bucket`` rule: which object URLs it may read.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from zerofeed.common.errors import ConfigError

__all__ = [
    "REMOTE_PREFIXES",
    "REMOTE_SCHEMES",
    "AllowList",
    "Member",
    "is_url",
    "join_url",
    "member_path",
    "origin",
    "parse_member",
    "split_url",
]

REMOTE_SCHEMES: tuple[str, ...] = ("s3", "http", "https")
"""URL schemes producers read (``s3://`` for any S3-compatible store)."""

REMOTE_PREFIXES = tuple(f"{scheme}://" for scheme in REMOTE_SCHEMES)
"""The same as URL prefixes (``s3://``, ...): as ``--allow`` entries, leave to read anything."""
_ENCODED = re.compile(r"%(2e|2f|5c)", re.IGNORECASE)  # an encoded ".", "/" or "\\": never allowed
_MEMBER = re.compile(r"^(.+\.tar)#([0-9]{1,15})\+([0-9]{1,12})$")


def is_url(path: str) -> bool:
    """Whether ``path`` is an object URL (``s3://``, ``http://``, ``https://``)."""
    return path.startswith(REMOTE_PREFIXES)


def split_url(url: str) -> tuple[str, str]:
    """``(origin, key)`` of an object URL: ``("s3://bucket", "img/1.jpg")`` or
    ``("https://host:8443", "data/img/1.jpg")``; raises :class:`ConfigError` for a URL that names
    no object (no bucket or host, a query string, a fragment, credentials in the URL)."""
    parts = urlsplit(url)
    if parts.scheme not in REMOTE_SCHEMES or not parts.netloc:
        raise ConfigError(
            f"{url!r} is not an object URL; expected s3://BUCKET/KEY or http(s)://HOST/PATH"
        )
    if parts.query or parts.fragment:
        raise ConfigError(
            f"{url!r} has a query string or fragment, which zerofeed does not send (signed "
            "URLs expire mid-training); give s3:// URLs with credentials on the reading node, "
            "or plain http(s) URLs"
        )
    if "@" in parts.netloc:
        raise ConfigError(
            f"the URL {_redacted(url)!r} holds credentials; they must not travel in manifests "
            "or on the wire: set them on the reading node (AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or ~/.aws/credentials)"
        )
    return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/")


def origin(url: str) -> str:
    """``scheme://bucket`` or ``scheme://host[:port]`` of an object URL."""
    return split_url(url)[0]


def join_url(base: str, relative: str) -> str:
    """``relative`` read against the folder URL ``base`` (``..`` folded, never above the
    bucket or host); an absolute URL ``relative`` is returned as is."""
    if is_url(relative):
        return relative
    where, key = split_url(base if base.endswith("/") else base + "/")
    joined = posixpath.normpath(posixpath.join("/" + key, relative)).lstrip("/")
    return f"{where}/{joined}"


@dataclass(frozen=True)
class Member:
    """A byte range of a tar shard: the data of one member."""

    container: str
    offset: int
    size: int


def parse_member(path: str) -> Member | None:
    """The :class:`Member` that ``path`` names (``CONTAINER.tar#OFFSET+SIZE``), else None."""
    if "#" not in path:
        return None
    match = _MEMBER.match(path)
    if match is None:
        return None
    return Member(match.group(1), int(match.group(2)), int(match.group(3)))


def member_path(container: str, offset: int, size: int) -> str:
    """The manifest path of the ``size`` bytes at ``offset`` of the shard ``container``."""
    return f"{container}#{offset}+{size}"


class AllowList:
    """Which object URLs a producer may read: ``--allow`` entries, each ``s3://bucket``,
    ``s3://bucket/prefix/``, ``https://host[:port]``, ``https://host/prefix/`` or a bare scheme
    (``s3://``: any bucket). No entry: no URL at all (local files only), so a producer never
    reads a URL that nobody chose for it (a cloud metadata address, another tenant's bucket).
    """

    def __init__(self, entries: tuple[str, ...] = ()) -> None:
        self.entries = tuple(_check_entry(entry) for entry in entries)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def permits(self, url: str) -> bool:
        """Whether ``url`` lies under one of the entries (at a ``/`` boundary); a URL with a
        ``.`` or ``..`` component, or a percent-encoded ``.``, ``/`` or ``\\``, is never
        permitted (a web server would fold it out of the prefix)."""
        path = url.split("/", 3)[3] if url.count("/") >= 3 else ""
        if any(part in (".", "..") for part in path.split("/")) or _ENCODED.search(path):
            return False
        return any(_under(url, entry) for entry in self.entries)

    def refusal(self, url: str) -> str:
        """Why ``url`` is refused, and how to allow it."""
        allowed = ", ".join(self.entries) if self.entries else "none"
        folder = url.rsplit("/", 1)[0] + "/"
        return (
            f"this producer may not read {url} (allowed: {allowed}); start it with "
            f"--allow {folder} (or a prefix of it, such as {origin(url)}) to let it read there"
        )


def _check_entry(entry: str) -> str:
    if entry in REMOTE_PREFIXES:
        return entry
    where, key = split_url(entry)
    return where if not key else f"{where}/{key}"


def _under(url: str, entry: str) -> bool:
    if entry.endswith("://"):
        return url.startswith(entry)
    if url == entry:
        return True
    return url.startswith(entry if entry.endswith("/") else entry + "/")


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://***@{host}{parts.path}"

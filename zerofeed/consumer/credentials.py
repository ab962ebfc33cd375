"""CURVE settings of a FeedSequence's socket, and keys of its own for its local producers."""

from __future__ import annotations

from pathlib import Path

from zerofeed.common.curve import generate, load_public, load_secret
from zerofeed.common.errors import ConfigError
from zerofeed.common.leftovers import OwnerLock, owned_folder
from zerofeed.consumer.dispatcher import CurveServer

__all__ = ["curve_settings"]


def curve_settings(
    server_secret_key: str | Path | None,
    authorized_keys: str | Path | None,
    *,
    local_producers: int,
) -> tuple[CurveServer | None, tuple[Path, Path] | None, tuple[Path, OwnerLock] | None]:
    """The socket's CURVE settings, the local producers' key files, and the private folder
    holding them with its owner lock (the caller removes the folder and releases the lock at
    close; a later start removes it if this process is killed); all None without CURVE.

    Local producers get a fresh key pair, accepted in addition to ``authorized_keys``.
    """
    if server_secret_key is None and authorized_keys is None:
        return None, None, None
    if server_secret_key is None or authorized_keys is None:
        raise ConfigError(
            "CURVE needs both server_secret_key (this consumer's .key_secret file) and "
            "authorized_keys (a folder of producers' public .key files); make keys with "
            "`zerofeed keys generate DIR`"
        )
    keys = load_secret(Path(server_secret_key))
    if not local_producers:
        return CurveServer(keys=keys, authorized=Path(authorized_keys)), None, None
    folder, owner = owned_folder("keys")  # 0700: only this user reads it
    public, secret = generate(folder, "local-producers")
    server = CurveServer(
        keys=keys,
        authorized=Path(authorized_keys),
        also_authorized=frozenset({load_public(public)}),
    )
    return server, (Path(server_secret_key), secret), (folder, owner)

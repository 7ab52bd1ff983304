"""The client's own CURVE keypair, made on first use in the client directory."""

from __future__ import annotations

from pathlib import Path

from ssd import keys
from ssd.paths import client_dir

__all__ = ["client_keypair", "key_stem"]


def key_stem(directory: Path | None = None) -> Path:
    """Return the client keypair's stem: ``DIR/client`` (``client.key``, ``client.key_secret``)."""
    return (directory or client_dir()) / "client"


def client_keypair(directory: Path | None = None) -> keys.KeyPair:
    """Load the client keypair, creating it (0600, in a 0700 directory) on first use."""
    stem = key_stem(directory)
    stem.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    pair, _ = keys.load_or_create_keypair(stem)
    return pair

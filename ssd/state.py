"""The daemon's state store: SQLite in the state directory, durable on every commit.

WAL mode with ``synchronous=FULL``: a commit that returned survives a crash or
a power cut, so nothing acknowledged to a client is lost.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

__all__ = ["open_state"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS sessions (
        client_key TEXT PRIMARY KEY,
        user TEXT NOT NULL,
        created REAL NOT NULL,
        expires REAL NOT NULL
    )""",
    # Running kernels, as their user's kernel worker reported them (record: JSON of KernelRecord).
    """CREATE TABLE IF NOT EXISTS kernels (
        kernel_id TEXT PRIMARY KEY,
        user TEXT NOT NULL,
        pid INTEGER NOT NULL,
        record BLOB NOT NULL,
        updated REAL NOT NULL
    )""",
)


def open_state(state_dir: Path) -> sqlite3.Connection:
    """Open (and create) ``STATE_DIR/state.db``, readable by the daemon's user only."""
    path = state_dir / "state.db"
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    for statement in _SCHEMA:
        db.execute(statement)
    return db

"""Sessions: a client's CURVE public key bound to a Unix user until a deadline.

Held in memory for the per-request check and written through to the state
store, so a broker restart keeps every session and clients need not log in again.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

__all__ = ["Session", "SessionStore"]


@dataclass(frozen=True)
class Session:
    """One binding of a client key to a user."""

    client_key: str
    user: str
    created: float
    expires: float


class SessionStore:
    """Bindings by client key, persisted in the ``sessions`` table."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._by_key: dict[str, Session] = {}
        now = time.time()
        self._db.execute("DELETE FROM sessions WHERE expires <= ?", (now,))
        for key, user, created, expires in self._db.execute("SELECT client_key, user, created, expires FROM sessions"):
            self._by_key[key] = Session(key, user, created, expires)

    def bind(self, client_key: str, user: str, lifetime: float) -> Session:
        """Bind *client_key* to *user* for *lifetime* seconds (replacing an older binding)."""
        now = time.time()
        session = Session(client_key, user, now, now + lifetime)
        self._db.execute(
            "INSERT OR REPLACE INTO sessions (client_key, user, created, expires) VALUES (?, ?, ?, ?)",
            (client_key, user, session.created, session.expires),
        )
        self._by_key[client_key] = session
        return session

    def get(self, client_key: str) -> Session | None:
        """Return the live session of *client_key*; an expired one is ended and None returned."""
        session = self._by_key.get(client_key)
        if session is not None and session.expires <= time.time():
            self.end(client_key)
            return None
        return session

    def end(self, client_key: str) -> bool:
        """End the session of *client_key*; tell whether there was one."""
        self._db.execute("DELETE FROM sessions WHERE client_key = ?", (client_key,))
        return self._by_key.pop(client_key, None) is not None

    def user_of(self, client_key: str) -> str | None:
        """The user *client_key* is bound to, if its session is live."""
        session = self.get(client_key)
        return None if session is None else session.user

    def keys_of(self, user: str) -> list[str]:
        """The client keys with a live session as *user* (for sealing that user's secrets)."""
        return [key for key in list(self._by_key) if self.user_of(key) == user]

    def __len__(self) -> int:
        return len(self._by_key)

"""Sessions: a client's CURVE public key bound to a Unix user until a deadline.

Held in memory for the per-request check and written through to the state
store, so a broker restart keeps every session and clients need not log in again.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
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

    def __init__(self, db: sqlite3.Connection, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock  # wall time: deadlines are stored and outlive the process
        self._by_key: dict[str, Session] = {}
        # Sessions ended because their account was disabled: key -> (why, when it would have expired).
        self._ended: dict[str, tuple[str, float]] = {}
        now = self._clock()
        self._db.execute("DELETE FROM sessions WHERE expires <= ?", (now,))
        for key, user, created, expires in self._db.execute("SELECT client_key, user, created, expires FROM sessions"):
            self._by_key[key] = Session(key, user, created, expires)

    def bind(self, client_key: str, user: str, lifetime: float) -> Session:
        """Bind *client_key* to *user* for *lifetime* seconds (replacing an older binding)."""
        now = self._clock()
        session = Session(client_key, user, now, now + lifetime)
        self._db.execute(
            "INSERT OR REPLACE INTO sessions (client_key, user, created, expires) VALUES (?, ?, ?, ?)",
            (client_key, user, session.created, session.expires),
        )
        self._by_key[client_key] = session
        self._ended.pop(client_key, None)
        return session

    def get(self, client_key: str) -> Session | None:
        """Return the live session of *client_key*; an expired one is ended and None returned."""
        session = self._by_key.get(client_key)
        if session is not None and session.expires <= self._clock():
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

    def end_user(self, user: str, reason: str) -> int:
        """End every session of *user* (its account was disabled), keeping *reason* for end_reason(); how many."""
        keys = self.keys_of(user)
        for key in keys:
            self._ended[key] = (reason, self._by_key[key].expires)
            self.end(key)
        return len(keys)

    def end_reason(self, client_key: str) -> str | None:
        """Why end_user() ended this key's session (until the session would have expired), if it did."""
        now = self._clock()
        for key in [k for k, (_, expires) in self._ended.items() if expires <= now]:
            del self._ended[key]
        ended = self._ended.get(client_key)
        return None if ended is None else ended[0]

    def logins(self) -> dict[str, float]:
        """Users with a live session, each with the time of its newest login (for the account re-checks)."""
        newest: dict[str, float] = {}
        for key in list(self._by_key):
            session = self.get(key)
            if session is not None:
                newest[session.user] = max(newest.get(session.user, 0.0), session.created)
        return newest

    def keys_of(self, user: str) -> list[str]:
        """The client keys with a live session as *user* (for sealing that user's secrets)."""
        return [key for key in list(self._by_key) if self.user_of(key) == user]

    def __len__(self) -> int:
        return len(self._by_key)

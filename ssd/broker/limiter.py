"""Login throttling (policy only): back off failures per user name and per address.

After each failure the next attempt for that name must wait a growing delay,
and past ``max_failures`` the name is refused for a lockout period; an address
gets the same treatment after ``address_free_failures`` more failures. At most
one attempt per name and a few per address are in PAM at once, so a
brute-forcer can never occupy the whole auth pool and delay another user's
valid login.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["LoginLimiter"]


@dataclass
class _Record:
    failures: int = 0
    blocked_until: float = 0.0
    inflight: int = 0
    last_failure: float = field(default=0.0)


class LoginLimiter:
    """Decides whether a login attempt may go to PAM now, or how long to wait."""

    def __init__(
        self,
        *,
        base_delay: float = 1.0,
        max_failures: int = 5,
        lockout: float = 300.0,
        per_address_inflight: int = 4,
        address_free_failures: int = 10,
        forget_after: float = 3600.0,
    ) -> None:
        self.base_delay = base_delay
        self.max_failures = max_failures
        # An address (a lab's NAT, loopback) is shared by many people: it is
        # slowed only after more failures than one name is allowed.
        self.address_free_failures = address_free_failures
        self.lockout = lockout
        self.per_address_inflight = per_address_inflight
        self.forget_after = max(forget_after, lockout)  # never forget a lockout before it ends
        self._names: dict[str, _Record] = {}
        self._addresses: dict[str, _Record] = {}

    def retry_after(self, name: str, address: str, *, pam: bool = True) -> float:
        """Seconds until an attempt for *name* from *address* may start; 0 means now.

        Key logins (``pam=False``) cost no PAM time, so only failures slow them,
        not attempts in progress.
        """
        now = time.monotonic()
        self._expire(now)
        by_name, by_address = self._names.get(name), self._addresses.get(address)
        wait = max(r.blocked_until - now for r in (by_name, by_address, _Record()) if r is not None)
        if pam and by_name is not None and by_name.inflight >= 1:
            wait = max(wait, self.base_delay)
        if pam and by_address is not None and by_address.inflight >= self.per_address_inflight:
            wait = max(wait, self.base_delay)
        return round(max(wait, 0.0), 3)

    def begin(self, name: str, address: str, *, pam: bool = True) -> None:
        """Count an attempt that goes to PAM now (key logins are not counted in flight)."""
        if not pam:
            return
        for record in (self._names.setdefault(name, _Record()), self._addresses.setdefault(address, _Record())):
            record.inflight += 1

    def finish(self, name: str, address: str, *, success: bool, counted: bool = True, pam: bool = True) -> None:
        """Record the outcome of an attempt started with begin(); counted=False only frees its slot."""
        now = time.monotonic()
        for table, key in ((self._names, name), (self._addresses, address)):
            record = table.setdefault(key, _Record())
            if pam:
                record.inflight = max(0, record.inflight - 1)
            if not counted:
                continue
            if success:
                if table is self._names:
                    table.pop(key, None)  # a valid login clears the name's history, not the address's
                continue
            record.failures += 1
            record.last_failure = now
            free = 0 if table is self._names else self.address_free_failures
            beyond = record.failures - free
            if beyond >= self.max_failures:
                record.blocked_until = now + self.lockout
            elif beyond > 0:
                record.blocked_until = now + self.base_delay * 2 ** (beyond - 1)

    def _expire(self, now: float) -> None:
        for table in (self._names, self._addresses):
            stale = [k for k, r in table.items() if not r.inflight and now - r.last_failure > self.forget_after]
            for key in stale:
                del table[key]

"""Password-login throttling (policy only): back off failures per (name, address) and per address.

Only password attempts are throttled: a key login cannot be guessed (CURVE
proved the key) and costs no PAM time, so no password failure ever delays one.
Failures count against the pair (user name, source address) and against the
source address, never against a name alone, so that an attacker at one address
cannot lock a user out who logs in from another. After each failure of a pair
its next attempt waits a growing delay, past ``max_failures`` it is refused for
``lockout`` seconds; an address gets the same treatment after
``address_free_failures`` more failures over all names. At most one attempt per
pair and ``per_address_inflight`` per address are in PAM at once: below the
auth pool size, so that one address never holds every auth worker.

The price of not locking names: an attacker with many addresses gets about
``max_failures`` guesses per name and address per ``lockout``. IPv6 addresses
count per /64 (what one host usually holds), and the auth pool's size caps the
rate of PAM attempts over all addresses together.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["LoginLimiter", "source_of"]

Clock = Callable[[], float]
K = TypeVar("K")


@dataclass
class _Record:
    failures: int = 0
    blocked_until: float = 0.0
    inflight: int = 0
    last_failure: float = 0.0


def source_of(address: str) -> str:
    """The unit an address counts as: itself for IPv4, its /64 for IPv6 (one host holds a whole /64)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class LoginLimiter:
    """Decides whether a password attempt may go to PAM now, or how long to wait."""

    def __init__(
        self,
        *,
        base_delay: float = 1.0,
        max_failures: int = 5,
        lockout: float = 300.0,
        per_address_inflight: int = 3,
        address_free_failures: int = 10,
        forget_after: float = 3600.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.base_delay = base_delay
        self.max_failures = max_failures
        # An address (a lab's NAT, loopback) is shared by many people: it is
        # slowed only after more failures than one name is allowed.
        self.address_free_failures = address_free_failures
        self.lockout = lockout
        self.per_address_inflight = max(1, per_address_inflight)
        self.forget_after = max(forget_after, lockout)  # never forget a lockout before it ends
        self.clock = clock
        self._pairs: dict[tuple[str, str], _Record] = {}
        self._addresses: dict[str, _Record] = {}

    def retry_after(self, name: str, address: str) -> float:
        """Seconds until a password attempt for *name* from *address* may start; 0 means now."""
        now = self.clock()
        self._expire(now)
        source = source_of(address)
        pair, by_address = self._pairs.get((name, source)), self._addresses.get(source)
        wait = max(r.blocked_until - now for r in (pair, by_address, _Record()) if r is not None)
        if pair is not None and pair.inflight >= 1:
            wait = max(wait, self.base_delay)
        if by_address is not None and by_address.inflight >= self.per_address_inflight:
            wait = max(wait, self.base_delay)
        return round(max(wait, 0.0), 3)

    def begin(self, name: str, address: str) -> None:
        """Count a password attempt that goes to PAM now."""
        for record in self._records(name, address):
            record.inflight += 1

    def finish(self, name: str, address: str, *, success: bool, counted: bool = True) -> None:
        """Record the outcome of an attempt started with begin(); counted=False only frees its slot."""
        now = self.clock()
        pair, by_address = self._records(name, address)
        for record in (pair, by_address):
            record.inflight = max(0, record.inflight - 1)
        if not counted:
            return
        if success:  # clears the pair's history, not the address's
            pair.failures, pair.blocked_until = 0, 0.0
            return
        for record, free in ((pair, 0), (by_address, self.address_free_failures)):
            record.failures += 1
            record.last_failure = now
            beyond = record.failures - free
            if beyond >= self.max_failures:
                record.blocked_until = now + self.lockout
            elif beyond > 0:
                record.blocked_until = now + self.base_delay * 2 ** (beyond - 1)

    def _records(self, name: str, address: str) -> tuple[_Record, _Record]:
        source = source_of(address)
        return self._pairs.setdefault((name, source), _Record()), self._addresses.setdefault(source, _Record())

    def _expire(self, now: float) -> None:
        _drop_stale(self._pairs, now - self.forget_after)
        _drop_stale(self._addresses, now - self.forget_after)


def _drop_stale(table: dict[K, _Record], before: float) -> None:
    """Forget records with nothing in flight whose last failure is older than *before*."""
    for key in [k for k, r in table.items() if not r.inflight and r.last_failure < before]:
        del table[key]

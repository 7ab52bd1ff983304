"""A kernel's lease: a frontend that started the kernel holds it while it renews; the host ends it otherwise.

A lease lives in the kernel worker's memory (renewals are frequent and are
not written to the state store); its length is in the kernel's record, so a
worker that re-adopts the kernel starts a fresh lease of that length, which
gives the frontend time to renew after a worker or daemon restart.
"""

from __future__ import annotations

import time

__all__ = ["Lease", "lease_lapsed"]


class Lease:
    """How long one renewal holds a kernel, and until when (``time.monotonic`` seconds)."""

    def __init__(self, seconds: float, now: float | None = None) -> None:
        self.seconds = seconds
        self.until = (time.monotonic() if now is None else now) + seconds

    def renew(self, now: float | None = None) -> None:
        """The frontend is alive: hold the kernel for another lease."""
        self.until = (time.monotonic() if now is None else now) + self.seconds

    def left(self, now: float | None = None) -> float:
        """Seconds until the lease lapses (negative once it has)."""
        return self.until - (time.monotonic() if now is None else now)


def lease_lapsed(lease: Lease | None, *, grace: float, clients: int, quiet_for: float, now: float) -> bool:
    """True when a leased kernel should go: its lease lapsed at least *grace* ago, no client is connected,
    and none has connected or left for *grace* (*quiet_for*: seconds since the last such change)."""
    if lease is None or clients > 0:
        return False
    return -lease.left(now) >= grace and quiet_for >= grace

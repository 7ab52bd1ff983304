"""Who may complete a CURVE handshake with the broker (ZAP policy, no sockets here).

Clients: any well-formed CURVE key may connect; the key becomes the
connection's User-Id and what it may do is decided per request from the keys
bound to users. Workers: only the keys the supervisor made for processes it
spawned.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

__all__ = ["CLIENT_DOMAIN", "WORKER_DOMAIN", "ClientPolicy", "ConnectionThrottle", "WorkerPolicy"]

log = logging.getLogger(__name__)

CLIENT_DOMAIN = "ssd"
WORKER_DOMAIN = "ssd-workers"

_V = TypeVar("_V")


class ClientPolicy:
    """Lets any CURVE client in; authorization happens per request."""

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP callback (pyzmq's Authenticator calls it with the Z85 key)."""
        return domain == CLIENT_DOMAIN


class ConnectionThrottle:
    """A token bucket per source address: *burst* new connections, refilled at *rate* per second.

    Memory is bounded by *max_addresses*: a bucket that time has refilled is the same as none and is
    dropped, and past the cap the least recently seen address is forgotten (which only hands it a
    fresh burst, as any new address of an attacker who has many gets anyway).
    """

    def __init__(
        self, burst: int, rate: float, clock: Callable[[], float] = time.monotonic, *, max_addresses: int = 10_000
    ) -> None:
        self.burst = burst
        self.rate = rate
        self.max_addresses = max_addresses
        self._clock = clock
        # address -> (tokens, when), least recently seen first: *when* rises along the order.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._logged: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        """How many addresses the throttle holds a bucket for."""
        return len(self._buckets)

    def admit(self, address: str) -> bool:
        """Take a token for *address*; False when it has none left."""
        now = self._clock()
        tokens, when = self._buckets.pop(address, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - when) * self.rate)
        _forget_older(self._buckets, now - self.burst / max(self.rate, 1e-9), key=lambda value: value[1])
        _cap(self._buckets, self.max_addresses - 1)
        admitted = tokens >= 1
        self._buckets[address] = (tokens - 1 if admitted else tokens, now)
        return admitted

    def should_log(self, address: str) -> bool:
        """Log a refused address at most once a minute."""
        now = self._clock()
        if now - self._logged.get(address, -60.0) < 60:
            return False
        self._logged.pop(address, None)
        _forget_older(self._logged, now - 60, key=lambda value: value)
        _cap(self._logged, self.max_addresses - 1)
        self._logged[address] = now
        return True


def _forget_older(entries: OrderedDict[str, _V], before: float, key: Callable[[_V], float]) -> None:
    """Drop the leading entries last seen before *before* (the order is by time last seen)."""
    while entries and key(next(iter(entries.values()))) <= before:
        entries.popitem(last=False)


def _cap(entries: OrderedDict[str, _V], size: int) -> None:
    """Drop the least recently seen entries until at most *size* remain."""
    while len(entries) > max(size, 0):
        entries.popitem(last=False)


class WorkerPolicy:
    """Lets in only the worker keys the supervisor registered."""

    def __init__(self, is_expected: Callable[[str], bool]) -> None:
        self._is_expected = is_expected

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP callback: accept a backend connection only from a spawned worker."""
        allowed = domain == WORKER_DOMAIN and self._is_expected(key.decode("ascii", "replace"))
        if not allowed:
            log.warning("refused a backend connection from an unknown key")
        return allowed

"""Who may complete a CURVE handshake with the broker (ZAP policy, no sockets here).

Clients: any well-formed CURVE key may connect; the key becomes the
connection's User-Id and what it may do is decided per request from the keys
bound to users. Workers: only the keys the supervisor made for processes it
spawned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["CLIENT_DOMAIN", "WORKER_DOMAIN", "ClientPolicy", "ConnectionThrottle", "WorkerPolicy"]

log = logging.getLogger(__name__)

CLIENT_DOMAIN = "ssd"
WORKER_DOMAIN = "ssd-workers"


class ClientPolicy:
    """Lets any CURVE client in; authorization happens per request."""

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP callback (pyzmq's Authenticator calls it with the Z85 key)."""
        return domain == CLIENT_DOMAIN


class ConnectionThrottle:
    """A token bucket per source address: *burst* new connections, refilled at *rate* per second."""

    def __init__(self, burst: int, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = burst
        self.rate = rate
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, when)
        self._logged: dict[str, float] = {}

    def admit(self, address: str) -> bool:
        """Take a token for *address*; False when it has none left."""
        now = self._clock()
        tokens, when = self._buckets.get(address, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - when) * self.rate)
        if len(self._buckets) > 10_000:  # forget full buckets rather than grow without bound
            self._buckets = {a: v for a, v in self._buckets.items() if v[0] < self.burst}
        if tokens < 1:
            self._buckets[address] = (tokens, now)
            return False
        self._buckets[address] = (tokens - 1, now)
        return True

    def should_log(self, address: str) -> bool:
        """Log a refused address at most once a minute."""
        now = self._clock()
        if now - self._logged.get(address, -60.0) < 60:
            return False
        self._logged[address] = now
        return True


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

"""Who may complete a CURVE handshake with the broker (ZAP policy, no sockets here).

Clients: any well-formed CURVE key may connect; the key becomes the
connection's User-Id and what it may do is decided per request from the keys
bound to users. Workers: only the keys the supervisor made for processes it
spawned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

__all__ = ["CLIENT_DOMAIN", "WORKER_DOMAIN", "ClientPolicy", "WorkerPolicy"]

log = logging.getLogger(__name__)

CLIENT_DOMAIN = "ssd"
WORKER_DOMAIN = "ssd-workers"


class ClientPolicy:
    """Lets any CURVE client in; authorization happens per request."""

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP callback (pyzmq's Authenticator calls it with the Z85 key)."""
        return domain == CLIENT_DOMAIN


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

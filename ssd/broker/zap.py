"""The ZAP handler: pyzmq's asyncio authenticator, plus a per-address limit on new connections.

Each CURVE handshake costs the server public-key cryptography before anyone has
logged in; a token bucket per source address keeps one host from opening
connections faster than the configured rate (the policy lives in policy.py).
"""

from __future__ import annotations

import logging

from zmq.auth.asyncio import AsyncioAuthenticator

from ssd.broker.policy import CLIENT_DOMAIN, ConnectionThrottle

__all__ = ["Authenticator"]

log = logging.getLogger("ssd.zap")


class Authenticator(AsyncioAuthenticator):
    """AsyncioAuthenticator that refuses client handshakes beyond an address's connection rate."""

    def __init__(self, *args: object, throttle: ConnectionThrottle, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.throttle = throttle

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        """Refuse when the address is over its rate, else decide as pyzmq does (policy callbacks)."""
        if len(msg) >= 6 and msg[2].decode("utf-8", "replace") == CLIENT_DOMAIN:
            address = msg[3].decode("utf-8", "replace")
            if not self.throttle.admit(address):
                if self.throttle.should_log(address):
                    log.warning("refusing new connections from %s: over its connection rate", address)
                self._send_zap_reply(msg[1], b"400", b"too many new connections")
                return
        await super().handle_zap_message(msg)

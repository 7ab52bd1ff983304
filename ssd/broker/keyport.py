"""The public-key port: a plain socket that tells anyone the server's public key.

CURVE needs the server's key before the handshake, so a client meeting a
server for the first time asks here, shows the fingerprint to its user, and
pins the key (trust on first use, as ssh does). What this port says proves
nothing by itself; only a later CURVE handshake with the pinned key does.

The reply is ``[KEY_REPLY, public key, JSON info]``; the info holds the name,
the fingerprint and, when the server has one, its certificate chain (PEM,
``certificate``), which a client with a CA file checks instead of asking a
person (``ssd.client.verify.certified_key``).
"""

from __future__ import annotations

import logging

import msgspec
import zmq.asyncio

__all__ = ["KEY_REPLY", "KEY_REQUEST", "serve_key"]

log = logging.getLogger(__name__)

KEY_REQUEST = b"SSDKEY1?"
KEY_REPLY = b"SSDKEY1"


async def serve_key(socket: zmq.asyncio.Socket, public_key: bytes, info: dict[str, str]) -> None:
    """Answer every well-formed key request on *socket* until cancelled."""
    body = msgspec.json.encode(info)
    while True:
        frames = await socket.recv_multipart()
        if len(frames) == 2 and frames[1] == KEY_REQUEST:
            socket.send_multipart([frames[0], KEY_REPLY, public_key, body])
        else:
            log.debug("ignored a malformed key request")

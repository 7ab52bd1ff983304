"""The public-key port: plain TCP (not ZeroMQ) that tells anyone the server's public key.

CURVE needs the server's key before the handshake, so a client meeting a
server for the first time asks here, shows the fingerprint to its user, and
pins the key (trust on first use, as ssh does). What this port says proves
nothing by itself; only a later CURVE handshake with the pinned key does.

Wire format (one exchange per connection, then the server closes)::

    client -> server   KEY_REQUEST                       (9 bytes: b"SSDKEY2?\\n")
    server -> client   KEY_MAGIC, key, length, info      (8 + 40 + 4 bytes big-endian, then `length` bytes JSON)

The info holds the name, the fingerprint and, when the server has one, its
certificate chain (PEM, ``certificate``), which a client with a CA file checks
instead of asking a person (``ssd.client.verify.certified_key``).

It is not ZeroMQ on purpose: libzmq buffers a whole multipart message, of any
number of frames, before the application sees it, so an anonymous peer could
make a ZeroMQ key port hold gigabytes. Here the server reads at most
``len(KEY_REQUEST)`` bytes per connection, within a deadline, and caps the
connections it holds in all and per address: what a peer costs is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections import Counter

import msgspec

__all__ = ["KEY_HEADER", "KEY_MAGIC", "KEY_REQUEST", "KeyServer", "encode_reply", "parse_header"]

log = logging.getLogger(__name__)

KEY_REQUEST = b"SSDKEY2?\n"
KEY_MAGIC = b"SSDKEY2\n"
KEY_HEADER = struct.Struct(">8s40sI")  # magic, Z85 public key, length of the JSON info

MAX_CONNECTIONS = 256  # held at once, from all addresses (each costs a socket and a few hundred bytes)
MAX_PER_ADDRESS = 32  # enough for many clients behind one NAT starting at once
DEADLINE = 5.0  # seconds a connection may take to send its request and read the reply


def encode_reply(public_key: bytes, info: dict[str, str]) -> bytes:
    """The whole reply: header and JSON info."""
    body = msgspec.json.encode(info)
    return KEY_HEADER.pack(KEY_MAGIC, public_key, len(body)) + body


def parse_header(header: bytes) -> tuple[bytes, int] | None:
    """(public key, info length) from a reply header, or None when it is not one."""
    if len(header) != KEY_HEADER.size:
        return None
    magic, key, length = KEY_HEADER.unpack(header)
    return (key, length) if magic == KEY_MAGIC else None


class KeyServer:
    """Answers KEY_REQUEST on a listening socket; everything else is cut off unanswered."""

    def __init__(
        self,
        public_key: bytes,
        info: dict[str, str],
        *,
        max_connections: int = MAX_CONNECTIONS,
        max_per_address: int = MAX_PER_ADDRESS,
        deadline: float = DEADLINE,
    ) -> None:
        self._reply = encode_reply(public_key, info)
        self._max_connections = max_connections
        self._max_per_address = max_per_address
        self._deadline = deadline
        self._held: Counter[str] = Counter()

    async def serve(self, listener: socket.socket) -> None:
        """Serve on *listener* (bound and listening) until cancelled."""
        # limit: the stream reader pauses the transport once it holds twice this much.
        server = await asyncio.start_server(self._handle, sock=listener, limit=len(KEY_REQUEST))
        async with server:
            await server.serve_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if self._held.total() >= self._max_connections or self._held[address] >= self._max_per_address:
            writer.transport.abort()
            return
        self._held[address] += 1
        try:
            answered = await asyncio.wait_for(self._exchange(reader, writer), self._deadline)
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            answered = False
        finally:
            self._held[address] -= 1
            if not self._held[address]:
                del self._held[address]
        if answered:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        else:
            log.debug("cut off a key port connection from %s that sent no key request", address)
            writer.transport.abort()  # unread junk: no graceful close, nothing more read

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        if await reader.readexactly(len(KEY_REQUEST)) != KEY_REQUEST:
            return False
        writer.write(self._reply)
        await writer.drain()
        return True

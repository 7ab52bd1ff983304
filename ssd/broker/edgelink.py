"""The broker's end of the link to the edge: client messages in, replies and events out (see ``ssd.edge.link``).

``EdgeLink`` looks to the control handler like the control ROUTER it replaced:
``recv_multipart`` returns a client message whose first frame answers
``get("User-Id")`` and ``get("Peer-Address")`` with what the edge's ZAP
handler proved, and ``send_multipart`` sends a reply back out.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import zmq
import zmq.asyncio

from ssd.edge.link import CLIENT, EDGE_DOMAIN, PUBLISH, REPLY, TAG

__all__ = ["ClientFrame", "ClientSocket", "EdgeLink", "EdgePolicy", "FrameSink"]

log = logging.getLogger(__name__)


class ClientFrame:
    """One frame of a client message, with the connection's properties on the first."""

    __slots__ = ("_properties", "bytes")

    def __init__(self, data: bytes, properties: dict[str, str] | None = None) -> None:
        self.bytes = data
        self._properties = properties or {}

    def get(self, name: str) -> str:
        """A connection property (``User-Id``, ``Peer-Address``), as zmq.Frame.get gives it."""
        return self._properties[name]


class ClientSocket(Protocol):
    """Where the control handler receives client messages and sends replies."""

    async def recv_multipart(self, copy: bool = ...) -> list[ClientFrame]:
        """The next client message."""

    def send_multipart(self, frames: list[bytes]) -> Any:
        """Send a reply (routing id first)."""


class FrameSink(Protocol):
    """Where the event publisher sends (topic first)."""

    def send_multipart(self, frames: list[bytes]) -> Any:
        """Send one event."""


class EdgePolicy:
    """ZAP policy of the link: only the key made for the running edge gets in."""

    def __init__(self) -> None:
        self.key = ""

    def expect(self, key: str) -> None:
        """From now on admit *key* (a new edge's) and no other."""
        self.key = key

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP callback (pyzmq's Authenticator calls it with the Z85 key)."""
        allowed = domain == EDGE_DOMAIN and bool(self.key) and key.decode("ascii", "replace") == self.key
        if not allowed:
            log.warning("refused a link connection from a key that is not the running edge's")
        return allowed


class EdgeLink:
    """The link ROUTER, seen as the control socket (``ClientSocket``) and, by ``events``, as the PUB."""

    def __init__(self, socket: zmq.asyncio.Socket, policy: EdgePolicy) -> None:
        self.socket = socket
        self.policy = policy
        self.events = _Publisher(self)

    @property
    def edge_id(self) -> bytes:
        """The running edge's routing id (its link key)."""
        return self.policy.key.encode()

    async def recv_multipart(self, copy: bool = False) -> list[ClientFrame]:
        """The next client message the running edge forwarded."""
        while True:
            frames = await self.socket.recv_multipart()
            if len(frames) >= 6 and frames[0] == self.edge_id and frames[1] == TAG and frames[2] == CLIENT:
                properties = {
                    "User-Id": frames[3].decode("ascii", "replace"),
                    "Peer-Address": frames[4].decode("utf-8", "replace"),
                }
                return [ClientFrame(frames[5], properties), *(ClientFrame(f) for f in frames[6:])]
            log.warning("dropped a malformed message on the edge link")

    def send_multipart(self, frames: list[bytes]) -> None:
        """A reply to a client, out through the edge (dropped if no edge is connected)."""
        self.socket.send_multipart([self.edge_id, TAG, REPLY, *frames])


class _Publisher:
    def __init__(self, link: EdgeLink) -> None:
        self._link = link

    def send_multipart(self, frames: list[bytes]) -> None:
        self._link.socket.send_multipart([self._link.edge_id, TAG, PUBLISH, *frames])

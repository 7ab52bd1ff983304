"""The events PUB socket: the periodic host status, and the kernel and environment events the broker passes on.

Anything published here can be read by every connected client (any subscriber
can subscribe to any topic), so events never carry secrets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from ssd import hostinfo
from ssd.broker.edgelink import FrameSink
from ssd.protocol import Wire

__all__ = ["EventPublisher"]

HOST_STATUS = "host_status"


class EventPublisher:
    """Publishes Jupyter-format messages on the PUB (the edge's, through the link) with the topic first."""

    def __init__(self, socket: FrameSink, wire: Wire) -> None:
        self.socket = socket
        self.wire = wire

    def publish(self, topic: str, msg_type: str, content: dict[str, Any]) -> None:
        """Send one event; PUB drops it for subscribers that are too slow."""
        _, frames = self.wire.serialize(msg_type, content, idents=[topic.encode()])
        self.socket.send_multipart(frames)

    async def publish_status(self, interval: float, extra: Callable[[], dict[str, Any]]) -> None:
        """Publish ``host_status`` every *interval* seconds until cancelled."""
        while True:
            content = {"time": time.time(), **hostinfo.host_status(), **extra()}
            self.publish(HOST_STATUS, HOST_STATUS, content)
            await asyncio.sleep(interval)

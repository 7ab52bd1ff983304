"""The edge's sockets and its two forwarding loops (client -> broker, broker -> clients)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any

import zmq
import zmq.asyncio

from ssd.broker.policy import CLIENT_DOMAIN, ClientPolicy, ConnectionThrottle
from ssd.broker.zap import Authenticator
from ssd.edge.link import CLIENT, MAX_FORWARDED_FRAMES, PUBLISH, REPLY, TAG, EdgeCredentials
from ssd.floodguard.guard import FloodGuard
from ssd.floodguard.policy import FloodPolicy

__all__ = ["Edge"]

log = logging.getLogger(__name__)

LINGER_MS = 200
# Subscriptions are short topics; with CURVE a frame carries 33 bytes of box and the INITIATE
# command of the handshake (about 300 bytes with metadata) passes the same limit.
MAX_SUBSCRIPTION_FRAME = 1024
LINK_HWM = 10_000


class Edge:
    """Public CURVE sockets, their ZAP handler and the flood guard; everything else is the broker's."""

    def __init__(self, credentials: EdgeCredentials) -> None:
        self.credentials = credentials
        self.ctx = zmq.asyncio.Context()
        self._stop = asyncio.Event()

    async def run(self) -> int:
        """Serve until stdin closes (the broker is gone or stops us) or SIGTERM."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        await loop.connect_read_pipe(lambda: _EndOfInput(self._stop), sys.stdin)
        creds = self.credentials
        auth = Authenticator(
            self.ctx,
            log=logging.getLogger("ssd.zap"),
            throttle=ConnectionThrottle(creds.connection_burst, creds.connection_rate),
        )
        auth.start()  # before any bind: without a handler libzmq admits every key
        auth.configure_curve_callback(CLIENT_DOMAIN, ClientPolicy())
        control = self._public(zmq.ROUTER, creds.max_message_size)
        events = self._public(zmq.PUB, MAX_SUBSCRIPTION_FRAME)
        guard = FloodGuard(
            zmq.Context.shadow(self.ctx.underlying),
            [control, events],
            FloodPolicy(creds.flood_threshold),
            what="the edge",
        )
        guard.start_guarding()
        link = self._link()
        try:
            self._bind(control, creds.control_fd, creds.control_endpoint)
            self._bind(events, creds.events_fd, creds.events_endpoint)
            link.connect(creds.link_endpoint)
            log.info("edge serving %s and %s", creds.control_endpoint, creds.events_endpoint)
            loops = [
                asyncio.create_task(c)
                for c in (self._from_clients(control, link), self._from_broker(link, control, events))
            ]
            stop = asyncio.create_task(self._stop.wait())
            done, _ = await asyncio.wait([*loops, stop], return_when=asyncio.FIRST_COMPLETED)
            for task in (*loops, stop):
                task.cancel()
            failed = [t for t in done if t is not stop and not t.cancelled() and t.exception() is not None]
            for task in failed:
                log.critical("edge loop ended: %r", task.exception())
            return 1 if failed else 0
        finally:
            guard.stop()
            auth.stop()
            self.ctx.destroy(linger=LINGER_MS)

    def _public(self, kind: int, max_message_size: int) -> zmq.asyncio.Socket:
        creds = self.credentials
        sock = self.ctx.socket(kind)
        sock.linger = LINGER_MS
        sock.sndhwm = sock.rcvhwm = creds.hwm
        sock.maxmsgsize = max_message_size
        sock.curve_server = True
        sock.curve_secretkey = creds.server_secret.encode()
        sock.zap_domain = CLIENT_DOMAIN.encode()
        sock.ipv6 = creds.ipv6
        return sock

    def _link(self) -> zmq.asyncio.Socket:
        creds = self.credentials
        sock = self.ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.sndhwm = sock.rcvhwm = LINK_HWM
        sock.routing_id = creds.link_public.encode()
        sock.curve_serverkey = creds.server_public.encode()
        sock.curve_publickey = creds.link_public.encode()
        sock.curve_secretkey = creds.link_secret.encode()
        return sock

    @staticmethod
    def _bind(sock: zmq.asyncio.Socket, fd: int, endpoint: str) -> None:
        sock.setsockopt(zmq.USE_FD, fd)  # the broker's listening socket: the port survives an edge restart
        sock.bind(endpoint)

    async def _from_clients(self, control: zmq.asyncio.Socket, link: zmq.asyncio.Socket) -> None:
        """Each complete client message, with its ZAP User-Id and Peer-Address, to the broker."""
        while True:
            frames: list[Any] = await control.recv_multipart(copy=False)
            head = frames[0]
            user_id = str(head.get("User-Id")).encode()
            address = str(head.get("Peer-Address")).encode()
            await link.send_multipart([TAG, CLIENT, user_id, address, *frames[:MAX_FORWARDED_FRAMES]], copy=False)

    async def _from_broker(
        self, link: zmq.asyncio.Socket, control: zmq.asyncio.Socket, events: zmq.asyncio.Socket
    ) -> None:
        """The broker's replies out on the control ROUTER, its events on the PUB."""
        while True:
            frames: list[Any] = await link.recv_multipart(copy=False)
            if len(frames) < 3 or frames[0].bytes != TAG:
                continue
            command = frames[1].bytes
            if command == REPLY:
                await control.send_multipart(frames[2:], copy=False)  # ROUTER drops what it cannot route
            elif command == PUBLISH:
                await events.send_multipart(frames[2:], copy=False)


class _EndOfInput(asyncio.Protocol):
    """Sets *stop* when the broker's end of our stdin closes."""

    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop.set()

    def data_received(self, data: bytes) -> None:
        """Nothing more is expected after the credentials; ignore it."""

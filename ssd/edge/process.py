"""The edge process: its public sockets, their ZAP handler, the flood guard and the forwarding thread."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import zmq
import zmq.asyncio

from ssd.broker.policy import CLIENT_DOMAIN, ClientPolicy, ConnectionThrottle
from ssd.broker.zap import Authenticator
from ssd.edge.forward import Forwarder
from ssd.edge.link import EdgeCredentials
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
        control.router_mandatory = True  # a reply that cannot be routed raises (logged by the forwarder)
        events = self._public(zmq.XPUB, MAX_SUBSCRIPTION_FRAME)  # XPUB: the forwarder answers hello topics
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
            ended: list[BaseException | None] = []

            def on_end(error: BaseException | None) -> None:
                ended.append(error)
                loop.call_soon_threadsafe(self._stop.set)

            forwarder = Forwarder(zmq.Context.shadow(self.ctx.underlying), control, events, link, on_end=on_end)
            forwarder.start()
            try:
                await self._stop.wait()
            finally:
                forwarder.stop()
            if ended and ended[0] is not None:
                log.critical("edge forwarding ended: %r", ended[0])
                return 1
            return 0
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


class _EndOfInput(asyncio.Protocol):
    """Sets *stop* when the broker's end of our stdin closes."""

    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop.set()

    def data_received(self, data: bytes) -> None:
        """Nothing more is expected after the credentials; ignore it."""

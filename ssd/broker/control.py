"""The control ROUTER: parse each client message, authorize it, route it, answer it.

The client is identified by the CURVE public key that ZAP reported for its
connection (the ``User-Id`` message property), never by its routing id, which
the client chooses. Every message gets a reply when one is possible: an
unparseable one gets ``bad_message``, never silence and never a traceback.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Mapping
from typing import Any

import zmq
import zmq.asyncio

from ssd import protocol
from ssd.broker.backend import WorkerRouter
from ssd.broker.dispatch import ROUTES, Auth, Route
from ssd.broker.handlers import HANDLERS, ServerFacts
from ssd.broker.registry import Pending
from ssd.config import ServerConfig
from ssd.messages import ContentError, parse_content
from ssd.protocol import BadMessage, Message, Wire

__all__ = ["ControlHandler"]

log = logging.getLogger(__name__)

# A Jupyter message has 6 frames after the routing id; allow a few buffers.
MAX_FRAMES = 16


class ControlHandler:
    """Handles every message that arrives on the control socket."""

    def __init__(
        self,
        socket: zmq.asyncio.Socket,
        wire: Wire,
        facts: ServerFacts,
        router: WorkerRouter,
        config: ServerConfig,
        *,
        services: set[str],
        bindings: Mapping[str, str],
    ) -> None:
        self.socket = socket
        self.wire = wire
        self.facts = facts
        self.router = router
        self.config = config
        self.services = services
        self.bindings = bindings  # client key -> Unix user (filled by login, issue 3)
        self.accepting = True
        self._ids = itertools.count(1)

    async def run(self) -> None:
        """Receive and answer client messages until cancelled."""
        while True:
            frames = await self.socket.recv_multipart(copy=False)
            try:
                self.handle(frames)
            except Exception:  # a bug in one request must not stop the broker
                log.exception("error handling a client message")
                with contextlib.suppress(Exception):
                    self._reply([frames[0].bytes], None, protocol.PROTOCOL_ERROR_TYPE, _internal())

    def handle(self, frames: list[zmq.Frame]) -> None:
        """Parse, authorize and dispatch one client message."""
        client_key = str(frames[0].get("User-Id"))
        routing_id = frames[0].bytes
        if len(frames) > MAX_FRAMES:
            self._bad([routing_id], None, f"too many frames ({len(frames)} > {MAX_FRAMES})")
            return
        try:
            msg = self.wire.parse([f.bytes for f in frames], has_idents=True)
        except BadMessage as exc:
            self._bad([routing_id], exc.header, exc.reason)
            return
        self.dispatch(msg, client_key)

    def dispatch(self, msg: Message, client_key: str) -> None:
        """Route a parsed message by the dispatch table."""
        route = ROUTES.get(msg.msg_type)
        if route is None:
            error = protocol.error_content(
                protocol.UNKNOWN_MESSAGE_TYPE, f"this server does not know the message type {msg.msg_type!r}"
            )
            self._answer_msg(msg, error)
            return
        if not self.accepting:
            self._answer_msg(msg, protocol.error_content(protocol.SHUTTING_DOWN, "the server is shutting down"))
            return
        refusal = self._authorize(route, client_key)
        if refusal is not None:
            self._answer_msg(msg, refusal)
            return
        try:
            content = parse_content(msg.content, route.content)
        except ContentError as exc:
            self._answer_msg(msg, protocol.error_content(protocol.BAD_REQUEST, f"{msg.msg_type}: {exc}"))
            return
        if route.handler is not None:
            self._answer_msg(msg, HANDLERS[route.handler](self.facts, content))
        else:
            self._to_worker(msg, route, client_key)

    def _authorize(self, route: Route, client_key: str) -> dict[str, Any] | None:
        if route.auth is Auth.PUBLIC:
            return None
        if client_key in self.bindings:
            return None
        return protocol.error_content(
            protocol.NOT_AUTHORIZED, f"{route.msg_type} needs a login first (ssd-ctl login HOST)"
        )

    def _to_worker(self, msg: Message, route: Route, client_key: str) -> None:
        assert route.service is not None
        if route.service not in self.services:
            error = protocol.error_content(
                protocol.SERVICE_UNAVAILABLE, f"the {route.service} service is not enabled on this server"
            )
            self._answer_msg(msg, error)
            return
        limit = self.config.max_inflight_per_client
        if self.router.registry.client_load(client_key) >= limit:
            error = protocol.error_content(
                protocol.TOO_MANY_REQUESTS, f"this client already has {limit} requests in progress; wait for replies"
            )
            self._answer_msg(msg, error)
            return
        pending = Pending(
            request_id=b"%d" % next(self._ids),
            service=route.service,
            idents=msg.idents,
            parent=msg.header,
            client_key=client_key,
            msg_type=msg.msg_type,
            content=msg.content,
            queued_at=time.monotonic(),
            user=self.bindings.get(client_key),
        )
        self.router.submit(pending)

    def answer(self, pending: Pending, content: dict[str, Any] | bytes) -> None:
        """Send a worker's (or the broker's) reply for *pending* to its client."""
        self._reply(pending.idents, pending.parent, protocol.reply_type(pending.msg_type), content)

    def _answer_msg(self, msg: Message, content: dict[str, Any]) -> None:
        self._reply(msg.idents, msg.header, protocol.reply_type(msg.msg_type), content)

    def _bad(self, idents: list[bytes], header: dict[str, Any] | None, reason: str) -> None:
        msg_type = protocol.PROTOCOL_ERROR_TYPE
        if header is not None and isinstance(header.get("msg_type"), str):
            msg_type = protocol.reply_type(header["msg_type"])
        parent = header if header is not None and isinstance(header.get("msg_id"), str) else None
        self._reply(idents, parent, msg_type, protocol.error_content(protocol.BAD_MESSAGE, reason))

    def _reply(
        self, idents: list[bytes], parent: dict[str, Any] | None, msg_type: str, content: dict[str, Any] | bytes
    ) -> None:
        _, frames = self.wire.serialize(msg_type, content, parent=parent, idents=idents)
        self.socket.send_multipart(frames)


def _internal() -> dict[str, Any]:
    return protocol.error_content(protocol.INTERNAL_ERROR, "internal server error (details in the server log)")

"""The control ROUTER: parse each client message, authorize it, route it, answer it.

The client is identified by the CURVE public key that ZAP reported for its
connection (the ``User-Id`` message property), never by its routing id, which
the client chooses. Every message gets a reply when one is possible: an
unparseable one gets ``bad_message``, never silence and never a traceback.
Replies leave through ``ssd.broker.answers``; requests for a worker through
*submit* (``UserWorkers.submit``: the backend, starting the user's worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from ssd import contract, protocol
from ssd.broker.admission import Check
from ssd.broker.answers import Replies
from ssd.broker.dispatch import ROUTES, Auth, Route
from ssd.broker.edgelink import ClientFrame, ClientSocket
from ssd.broker.handlers import HANDLERS, RequestContext, ServerFacts
from ssd.broker.limiter import LoginLimiter
from ssd.broker.registry import LoginAttempt, Pending, Registry
from ssd.broker.sessions import SessionStore
from ssd.config import ServerConfig
from ssd.errors import ErrorCode
from ssd.messages import ContentError, LoginRequest, RequestContent, parse_content
from ssd.protocol import BadMessage, Message, Wire
from ssd.users import EMPTY_PASSWORD_REFUSED, normalize_username

__all__ = ["ControlHandler"]

log = logging.getLogger(__name__)

# A Jupyter message has 6 frames after the routing id; allow a few buffers.
MAX_FRAMES = 16


class ControlHandler:
    """Handles every message that arrives on the control socket."""

    def __init__(
        self,
        socket: ClientSocket,
        wire: Wire,
        replies: Replies,
        facts: ServerFacts,
        config: ServerConfig,
        *,
        registry: Registry,
        submit: Callable[[Pending], None],
        admission: Mapping[str, Check],
        services: set[str],
        sessions: SessionStore,
        limiter: LoginLimiter,
        permit_empty_passwords: bool,
    ) -> None:
        self.socket = socket
        self.wire = wire
        self.replies = replies
        self.facts = facts
        self.config = config
        self.registry = registry
        self._submit = submit
        # Checks a request type must pass before it goes to a worker (ssd.broker.admission): (user, content).
        self.admission = admission
        self.services = services
        self.sessions = sessions  # client key -> Unix user, with a deadline
        self.limiter = limiter
        self.permit_empty_passwords = permit_empty_passwords
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
                    self.replies.send([frames[0].bytes], None, protocol.PROTOCOL_ERROR_TYPE, _internal())
            await asyncio.sleep(0)  # let the other tasks run between messages (see WorkerRouter.run)

    def handle(self, frames: list[ClientFrame]) -> None:
        """Parse, authorize and dispatch one client message."""
        client_key = str(frames[0].get("User-Id"))
        routing_id = frames[0].bytes
        if len(frames) > MAX_FRAMES:
            self.replies.bad_message([routing_id], None, f"too many frames ({len(frames)} > {MAX_FRAMES})")
            return
        try:
            msg = self.wire.parse([f.bytes for f in frames], has_idents=True)
        except BadMessage as exc:
            self.replies.bad_message([routing_id], exc.header, exc.reason)
            return
        address = str(frames[0].get("Peer-Address")) if msg.msg_type == contract.LOGIN.msg_type else ""
        self.dispatch(msg, client_key, address)

    def dispatch(self, msg: Message, client_key: str, address: str = "") -> None:
        """Route a parsed message by the dispatch table."""
        route = ROUTES.get(msg.msg_type)
        if route is None:
            error = protocol.error_content(
                ErrorCode.UNKNOWN_MESSAGE_TYPE, f"this server does not know the message type {msg.msg_type!r}"
            )
            self.replies.to_message(msg, error)
            return
        if not self.accepting:
            self.replies.to_message(msg, protocol.error_content(ErrorCode.SHUTTING_DOWN, "the server is shutting down"))
            return
        refusal = self._authorize(route, client_key)
        if refusal is not None:
            self.replies.to_message(msg, refusal)
            return
        try:
            content = parse_content(msg.content, route.request)
        except ContentError as exc:
            self.replies.to_message(msg, protocol.error_content(ErrorCode.BAD_REQUEST, f"{msg.msg_type}: {exc}"))
            return
        if route.service is None:
            context = RequestContext(self.facts, client_key, self.sessions)
            self.replies.to_message(msg, HANDLERS[route.msg_type](context, content))
            return
        login: LoginAttempt | None = None
        if isinstance(content, LoginRequest):
            login = self._admit_login(msg, content, address)
            if login is None:
                return
        self._to_worker(msg, route, content, client_key, login)

    def _authorize(self, route: Route, client_key: str) -> dict[str, Any] | None:
        if route.auth is Auth.PUBLIC:
            return None
        if self.sessions.user_of(client_key) is not None:
            return None
        ended = self.sessions.end_reason(client_key)
        if ended is not None:  # its account was disabled since the login (ssd.broker.accounts)
            return protocol.error_content(ErrorCode.NOT_AUTHORIZED, f"your session was ended: {ended}")
        return protocol.error_content(
            ErrorCode.NOT_AUTHORIZED,
            f"{route.msg_type} needs a login first (ssd-ctl login HOST); a session may also have expired",
        )

    def _admit_login(self, msg: Message, content: LoginRequest, address: str) -> LoginAttempt | None:
        """Validate the user name and password, throttle password attempts; None when already answered."""
        try:
            name = normalize_username(content.username)
        except ValueError as exc:
            self.replies.to_message(msg, protocol.error_content(ErrorCode.BAD_REQUEST, f"invalid user name: {exc}"))
            return None
        if content.password is None:
            return LoginAttempt(name, address, pam=False)  # a key cannot be guessed: never throttled
        if content.password == "" and not self.permit_empty_passwords:
            # Whatever the name: the answer tells nothing about the account, and "" is no secret.
            self.replies.to_message(msg, protocol.error_content(ErrorCode.AUTH_FAILED, EMPTY_PASSWORD_REFUSED))
            return None
        wait = self.limiter.retry_after(name, address)
        if wait > 0:
            error = protocol.error_content(
                ErrorCode.LOGIN_THROTTLED,
                f"too many login attempts for this user name from this address, or from this address; "
                f"try again in {math.ceil(wait)} s",
            )
            self.replies.to_message(msg, {**error, "retry_after": wait})
            return None
        self.limiter.begin(name, address)
        return LoginAttempt(name, address, pam=True)

    def _to_worker(
        self, msg: Message, route: Route, content: RequestContent, client_key: str, login: LoginAttempt | None
    ) -> None:
        """Hand the validated content on to a worker of the route's service (after the broker's own checks)."""
        assert route.service is not None
        limit = self.config.max_inflight_per_client
        error: dict[str, Any] | None
        if route.service not in self.services:
            error = protocol.error_content(
                ErrorCode.SERVICE_UNAVAILABLE, f"the {route.service} service is not enabled on this server"
            )
        elif self.registry.client_load(client_key) >= limit:
            error = protocol.error_content(
                ErrorCode.TOO_MANY_REQUESTS, f"this client already has {limit} requests in progress; wait for replies"
            )
        else:
            check = self.admission.get(msg.msg_type)
            error = check(self.sessions.user_of(client_key), content) if check is not None else None
        if error is not None:
            if login is not None and login.pam:
                self.limiter.finish(login.name, login.address, success=False, counted=False)
            self.replies.to_message(msg, error)
            return
        pending = Pending(
            request_id=b"%d" % next(self._ids),
            service=route.service,
            idents=msg.idents,
            parent=msg.header,
            client_key=client_key,
            msg_type=msg.msg_type,
            content=content,
            queued_at=time.monotonic(),
            user=self.sessions.user_of(client_key),
            login=login,
            per_user=route.per_user,
        )
        self._submit(pending)


def _internal() -> dict[str, Any]:
    return protocol.error_content(ErrorCode.INTERNAL_ERROR, "internal server error (details in the server log)")

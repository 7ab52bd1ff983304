"""Replies to clients: the one way out of the control socket, for the broker's answers and the workers'.

A worker's reply to a login also binds the client key to its user and feeds
the login throttle, here, where every reply to a client passes.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ssd import protocol
from ssd.broker.edgelink import FrameSink
from ssd.broker.limiter import LoginLimiter
from ssd.broker.registry import Pending
from ssd.broker.sessions import SessionStore
from ssd.errors import ErrorCode
from ssd.protocol import Content, Message, Wire
from ssd.replies import LoginReply

__all__ = ["Replies"]


class Replies:
    """Sends replies on the control socket (the edge's, through the link)."""

    def __init__(
        self, socket: FrameSink, wire: Wire, *, sessions: SessionStore, limiter: LoginLimiter, session_lifetime: float
    ) -> None:
        self.socket = socket
        self.wire = wire
        self.sessions = sessions  # client key -> Unix user, with a deadline
        self.limiter = limiter
        self.session_lifetime = session_lifetime

    def answer(self, pending: Pending, content: Content) -> None:
        """Send a worker's (or the broker's) reply for *pending* to its client."""
        if pending.on_answer is not None:  # the broker's own request
            pending.on_answer(content)
            return
        if pending.login is not None:
            content = self._after_login(pending, content)
        self.send(pending.idents, pending.parent, protocol.reply_type(pending.msg_type), content)

    def _after_login(self, pending: Pending, content: Content) -> Content:
        """Bind the key on success, feed the throttle either way (a worker error is not the user's)."""
        assert pending.login is not None
        body = content if isinstance(content, bytes) else msgspec.json.encode(content)
        granted = _login_granted(body)
        login = pending.login
        # Only passwords can be guessed: a refused key (CURVE proved its owner) is no failure to count,
        # and counting it would lock out a shared address after a few `ssd-ctl login` key probes.
        if login.pam:
            failed = granted is None and _ename(body) == ErrorCode.AUTH_FAILED
            self.limiter.finish(
                login.name, login.address, success=granted is not None, counted=granted is not None or failed
            )
        if granted is None:
            return content
        session = self.sessions.bind(pending.client_key, granted.user, self.session_lifetime)
        return msgspec.structs.replace(granted, expires=session.expires)

    def to_message(self, msg: Message, content: Content) -> None:
        """Answer a parsed client message the broker itself decided on."""
        self.send(msg.idents, msg.header, protocol.reply_type(msg.msg_type), content)

    def bad_message(self, idents: list[bytes], header: dict[str, Any] | None, reason: str) -> None:
        """Answer a message that did not parse, as far as its header allows."""
        msg_type = protocol.PROTOCOL_ERROR_TYPE
        if header is not None and isinstance(header.get("msg_type"), str):
            msg_type = protocol.reply_type(header["msg_type"])
        parent = header if header is not None and isinstance(header.get("msg_id"), str) else None
        self.send(idents, parent, msg_type, protocol.error_content(ErrorCode.BAD_MESSAGE, reason))

    def send(self, idents: list[bytes], parent: dict[str, Any] | None, msg_type: str, content: Content) -> None:
        """Serialize and send one reply."""
        _, frames = self.wire.serialize(msg_type, content, parent=parent, idents=idents)
        self.socket.send_multipart(frames)


class _Status(msgspec.Struct):
    """The status and code of a reply (to tell a refused login from a worker's failure)."""

    status: str = ""
    ename: str = ""


def _login_granted(body: bytes) -> LoginReply | None:
    """The worker's login reply when it granted the login, else None."""
    try:
        return msgspec.json.decode(body, type=LoginReply)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _ename(body: bytes) -> str:
    try:
        return msgspec.json.decode(body, type=_Status).ename
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ""

"""The async client: connect with a verified server key, send requests, read events.

Everything that talks to a daemon (``ssd-ctl``, the Jupyter provisioner, Spyder)
uses this class or its sync twin ``ssd.client.Client``. Its methods are
coroutines without an ``async_`` prefix (which in ssd marks a coroutine
beside a blocking twin of the same name): the whole class lives in one loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import msgspec
import zmq
import zmq.asyncio

from ssd import contract, keys
from ssd.client.hostspec import DEFAULT_PORT, HostSpec, parse_host
from ssd.client.identity import client_keypair
from ssd.client.kernels import KernelCalls
from ssd.client.known_hosts import KnownHost, KnownHosts
from ssd.client.verify import Handshake, certified_key, fetch_server_key, wait_handshake
from ssd.errors import ErrorCode, RemoteError, RequestTimeout, ServerKeyMismatch, ServerUntrusted, SSDError, Unreachable
from ssd.messages import (
    EchoRequest,
    EnvCancelRequest,
    EnvCreateRequest,
    EnvInfoRequest,
    EnvInstallRequest,
    EnvListRequest,
    EnvRemoveRequest,
    KeyAddRequest,
    KeyRemoveRequest,
    LoginRequest,
    LogoutRequest,
    PingRequest,
    RequestContent,
    ServerInfoRequest,
    WhoamiRequest,
)
from ssd.paths import client_ca_file
from ssd.protocol import BadMessage, Wire
from ssd.replies import (
    EchoReply,
    EnvCancelReply,
    EnvInfoReply,
    EnvListReply,
    EnvOperationReply,
    KeyAddReply,
    KeyRemoveReply,
    LoginReply,
    LogoutReply,
    PingReply,
    Reply,
    ServerInfoReply,
    WhoamiReply,
)
from ssd.topics import HELLO, SUBSCRIBED, hello_topic

__all__ = ["SUBSCRIBE_TIMEOUT", "AsyncClient", "Event", "typed_reply", "until_subscribed"]

log = logging.getLogger(__name__)

Q = TypeVar("Q", bound=RequestContent)
R = TypeVar("R", bound=Reply)


@dataclass(frozen=True)
class Event:
    """One message from the server's events socket."""

    topic: str
    msg_type: str
    content: dict[str, Any]


SUBSCRIBE_TIMEOUT = 5.0  # seconds to wait for a subscription's SUBSCRIBED before going on without it


async def until_subscribed(subscribed: asyncio.Event, timeout: float = SUBSCRIBE_TIMEOUT) -> bool:
    """Wait until ``events(..., subscribed=)`` is in effect; False after *timeout* (no answer: go on anyway)."""
    try:
        await asyncio.wait_for(subscribed.wait(), timeout)
    except TimeoutError:
        log.debug("no SUBSCRIBED within %g s; going on without it", timeout)
        return False
    return True


class AsyncClient(KernelCalls):
    """A CURVE connection to one ssd daemon."""

    def __init__(
        self,
        host: str | HostSpec,
        *,
        trust: bool = False,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        identity: keys.KeyPair | None = None,
        known_hosts: KnownHosts | None = None,
        ca_file: Path | str | None = None,
    ) -> None:
        self.spec = host if isinstance(host, HostSpec) else parse_host(host)
        self.trust = trust
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.identity = identity or client_keypair()
        self.known_hosts = known_hosts or KnownHosts()
        # With a CA file (argument, SSD_CA_FILE or CLIENT_DIR/ca.pem) the server's certificate replaces TOFU;
        # ca_file="" means known hosts whatever the environment says.
        self.ca_file = client_ca_file() if ca_file is None else Path(ca_file) if ca_file else None
        self.server_key: bytes | None = None
        self.wire = Wire(username="ssd-client")
        self._ctx: zmq.asyncio.Context | None = None
        self._sock: zmq.asyncio.Socket | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._receiver: asyncio.Task[None] | None = None

    @property
    def fingerprint(self) -> str:
        """The verified server key's fingerprint (after connect)."""
        assert self.server_key is not None, "connect() first"
        return keys.fingerprint(self.server_key)

    async def __aenter__(self) -> AsyncClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType] | None) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the control connection after verifying the server's key."""
        self._ctx = zmq.asyncio.Context()
        try:
            self.server_key = await self._pinned_key()
            sock = self._curve_socket(zmq.DEALER)
            outcome = await wait_handshake(sock, self.spec.endpoint(), self.connect_timeout)
            if outcome != Handshake.OK:
                sock.close(linger=0)
                await self._explain_failure(outcome)
            self._sock = sock
            self._receiver = asyncio.create_task(self._receive())
        except BaseException:
            await self.close()
            raise

    async def _pinned_key(self) -> bytes:
        pins = [] if self.ca_file else self.known_hosts.pins_for(self.spec)
        exact = next((entry for entry in pins if entry.host == self.spec.key), None)
        if exact is not None:
            return exact.public_key
        offered = await fetch_server_key(self.spec, self.connect_timeout)
        if offered is None:
            raise Unreachable(f"cannot reach an ssd server at {self.spec} (no answer on key port {self.spec.key_port})")
        if self.ca_file is not None:
            return certified_key(offered, self.ca_file, self.spec)
        if pins:
            return self._same_server(offered.public_key, pins)
        found = keys.fingerprint(offered.public_key)
        if not self.trust:
            raise ServerUntrusted(
                f"the authenticity of {self.spec} can't be established; its key fingerprint is {found}. "
                f"If that is the server's fingerprint, run: ssd-ctl trust {self.spec}",
                fingerprint=found,
                public_key=offered.public_key,
            )
        self.known_hosts.pin(self.spec.key, offered.public_key)
        log.info("pinned %s as %s in %s", self.spec, found, self.known_hosts.path)
        return offered.public_key

    def _same_server(self, offered: bytes, pins: list[KnownHost]) -> bytes:
        """A discovered instance on a port not pinned yet: its key must be one pinned for its name or address."""
        if offered not in {entry.public_key for entry in pins}:
            raise ServerKeyMismatch(
                f"SERVER KEY CHANGED for {self.spec}: known hosts has {pins[0].fingerprint} for {pins[0].host}, "
                f"the server now offers {keys.fingerprint(offered)}. Someone may be impersonating it. "
                f"If the change is expected, remove the lines for {self.spec.host} from {self.known_hosts.path} "
                f"(or run: ssd-ctl trust --replace {self.spec.host})"
            )
        self.known_hosts.pin(self.spec.key, offered)  # the same server on a new port: no new trust is given
        log.info("%s offers the key pinned for %s; pinned it as %s too", self.spec, pins[0].host, self.spec.key)
        return offered

    async def _explain_failure(self, outcome: str) -> None:
        assert self.server_key is not None
        if outcome == Handshake.NO_ANSWER:  # no TCP connection at all: asking the key port would only wait again
            raise Unreachable(f"cannot connect to {self.spec}: no answer within {self.connect_timeout:g}s")
        offered = await fetch_server_key(self.spec, self.connect_timeout)
        if offered is not None and offered.public_key != self.server_key:
            raise ServerKeyMismatch(
                f"SERVER KEY CHANGED for {self.spec}: known hosts has {keys.fingerprint(self.server_key)}, "
                f"the server now offers {keys.fingerprint(offered.public_key)}. Someone may be impersonating it. "
                f"If the change is expected, remove the line for {self.spec.key} from {self.known_hosts.path} "
                f"(or run: ssd-ctl trust --replace {self.spec})"
            )
        raise Unreachable(f"{self.spec} refused the encrypted connection")

    def _curve_socket(self, kind: int) -> zmq.asyncio.Socket:
        assert self._ctx is not None
        assert self.server_key is not None
        sock = self._ctx.socket(kind)
        sock.linger = 0
        sock.curve_serverkey = self.server_key
        sock.curve_publickey = self.identity.public
        sock.curve_secretkey = self.identity.secret
        return sock

    async def request(
        self, msg_type: str, content: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Send ``msg_type`` and return the reply content; raise RemoteError on an error reply."""
        if self._sock is None:
            raise Unreachable("not connected; call connect() first")
        msg_id, frames = self.wire.serialize(msg_type, content or {})
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        try:
            async with asyncio.timeout(timeout or self.timeout):
                await self._sock.send_multipart(frames)
                reply = await future
        except TimeoutError:
            raise RequestTimeout(
                f"no reply to {msg_type} from {self.spec} within {timeout or self.timeout:g}s"
            ) from None
        finally:
            self._pending.pop(msg_id, None)
        if reply.get("status") != "ok":
            message = _name_host(str(reply.get("evalue", "the server refused")), self.spec)
            raise RemoteError(str(reply.get("ename", ErrorCode.ERROR)), message, reply)
        return reply

    async def _receive(self) -> None:
        assert self._sock is not None
        while True:
            frames = await self._sock.recv_multipart()
            try:
                msg = self.wire.parse(frames, has_idents=True)
            except BadMessage as exc:
                log.warning("ignored a malformed reply from %s: %s", self.spec, exc.reason)
                continue
            future = self._pending.get(str(msg.parent_header.get("msg_id", "")))
            if future is not None and not future.done():
                future.set_result(msg.content)

    async def call(self, message: contract.MessageType[Q, R], content: Q, *, timeout: float | None = None) -> R:
        """Send a request of a registered type and return its typed reply (``bad_reply`` when it does not fit)."""
        reply = await self.request(message.msg_type, msgspec.to_builtins(content), timeout=timeout)
        return typed_reply(message, reply)

    async def ping(self, data: str = "") -> PingReply:
        """Round trip through the broker."""
        return await self.call(contract.PING, PingRequest(data=data))

    async def server_info(self) -> ServerInfoReply:
        """The server's identity, version, capabilities and host status."""
        return await self.call(contract.SERVER_INFO, ServerInfoRequest())

    async def login(self, username: str, password: str | None = None) -> LoginReply:
        """Bind this client's key to *username*: with a password, or (None) an authorized key."""
        # PAM takes seconds to refuse a wrong password; never time out before it answers.
        content = LoginRequest(username=username, password=password)
        return await self.call(contract.LOGIN, content, timeout=max(self.timeout, 30.0))

    async def logout(self) -> LogoutReply:
        """End this key's session on the server."""
        return await self.call(contract.LOGOUT, LogoutRequest())

    async def whoami(self) -> WhoamiReply:
        """The user this key is bound to, since and until when."""
        return await self.call(contract.WHOAMI, WhoamiRequest())

    async def key_add(self, comment: str = "") -> KeyAddReply:
        """Authorize this client's key for the logged-in user (copy-id)."""
        return await self.call(contract.KEY_ADD, KeyAddRequest(comment=comment))

    async def key_remove(
        self, key: str | None = None, *, all_keys: bool = False, dry_run: bool = False
    ) -> KeyRemoveReply:
        """Take *key* (default: this client's), or every key, out of the user's authorized keys (revoke-id)."""
        return await self.call(contract.KEY_REMOVE, KeyRemoveRequest(key=key, all=all_keys, dry_run=dry_run))

    async def env_list(self) -> EnvListReply:
        """The logged-in user's environments on the host."""
        return await self.call(contract.ENV_LIST, EnvListRequest())

    async def env_info(self, env: str) -> EnvInfoReply:
        """One environment, by name or prefix."""
        return await self.call(contract.ENV_INFO, EnvInfoRequest(env=env))

    async def env_create(self, content: EnvCreateRequest) -> EnvOperationReply:
        """Start creating an environment; its progress comes as ``env_progress`` events."""
        return await self.call(contract.ENV_CREATE, content)

    async def env_install(self, content: EnvInstallRequest) -> EnvOperationReply:
        """Start installing packages into an environment; progress as events."""
        return await self.call(contract.ENV_INSTALL, content)

    async def env_remove(self, env: str) -> EnvOperationReply:
        """Start removing an environment; progress as events."""
        return await self.call(contract.ENV_REMOVE, EnvRemoveRequest(env=env))

    async def env_cancel(self, operation: str) -> EnvCancelReply:
        """Cancel a running environment operation; returns once it stopped."""
        return await self.call(contract.ENV_CANCEL, EnvCancelRequest(operation=operation))

    async def echo(self, data: str = "", delay: float = 0.0) -> EchoReply:
        """Round trip through the diagnostic worker (``[workers] diag = true``)."""
        return await self.call(contract.ECHO, EchoRequest(data=data, delay=delay))

    async def events(
        self, topics: tuple[str, ...] = ("",), *, port: int | None = None, subscribed: asyncio.Event | None = None
    ) -> AsyncGenerator[Event, None]:
        """Yield events from the server's events socket (all topics by default) until closed.

        With *subscribed*, it is set once the server has the subscriptions (its SUBSCRIBED answer to
        a hello topic of this subscriber's own, sent after them): events published from then on arrive.
        """
        if port is None:
            port = (await self.server_info()).events_port
        sock = self._curve_socket(zmq.SUB)
        for topic in topics:
            sock.subscribe(topic.encode())
        hello = hello_topic(secrets.token_hex(8)) if subscribed is not None else ""
        if hello:
            sock.subscribe(hello.encode())
        sock.connect(self.spec.endpoint(port))
        try:
            while True:
                frames = await sock.recv_multipart()
                try:
                    msg = self.wire.parse(frames, has_idents=True)
                except BadMessage:
                    continue
                topic = msg.idents[0].decode(errors="replace") if msg.idents else ""
                if topic.startswith(HELLO):  # another subscriber's welcome, or ours
                    if subscribed is not None and topic == hello and msg.msg_type == SUBSCRIBED:
                        subscribed.set()
                    continue
                yield Event(topic, msg.msg_type, msg.content)
        finally:
            sock.close(linger=0)

    async def close(self) -> None:
        """Close sockets and the context; pending requests fail with Unreachable."""
        if self._receiver is not None:
            self._receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._receiver
            self._receiver = None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(Unreachable("connection closed"))
        self._pending.clear()
        if self._ctx is not None:
            self._ctx.destroy(linger=0)
            self._ctx = None
            self._sock = None


# "ssd-ctl COMMAND HOST": the server cannot know how this client names it, the client fills it in.
_HOST_PLACEHOLDER = re.compile(r"(ssd-ctl(?: [a-z][a-z-]*){1,2}) HOST\b")


def typed_reply(message: contract.MessageType[Any, R], reply: dict[str, Any]) -> R:
    """*reply* as its registered struct; a reply that does not fit is ``bad_reply``, naming the field."""
    try:
        return msgspec.convert(reply, message.reply)
    except msgspec.ValidationError as exc:
        where = str(exc).replace("`$.", "`").replace("`$`", "the reply")
        raise SSDError(f"the server's {message.reply_type} is malformed: {where}", code=ErrorCode.BAD_REPLY) from None


def _name_host(message: str, spec: HostSpec) -> str:
    """*message* with the HOST of its ssd-ctl commands replaced by this host as ssd-ctl takes it."""
    name = spec.host if spec.port == DEFAULT_PORT else spec.key
    return _HOST_PLACEHOLDER.sub(lambda m: f"{m.group(1)} {name}", message)

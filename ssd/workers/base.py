"""The loop every worker shares: connect to the broker, register, heartbeat, serve.

A service subclasses ``Worker``, sets ``service`` and fills ``handlers`` with
``msg_type -> handler``: exactly the registry's types for that service
(``ssd.contract``, checked when the worker starts), whose request structs the
requests are decoded with. Handlers are coroutines returning the reply struct;
raising ``SSDError`` sends its code and message to the client, anything else is
logged here and reported as ``internal_error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import msgspec
import zmq
import zmq.asyncio

from ssd import contract, protocol
from ssd.errors import ErrorCode, SSDError
from ssd.messages import ContentError, decode_content
from ssd.replies import Reply
from ssd.workers import wire

__all__ = ["Handler", "Worker", "check_handlers"]

log = logging.getLogger(__name__)

Handler = Callable[[Any, Any, wire.Request], Awaitable[Reply]]


def check_handlers(service: str, handlers: dict[str, Handler]) -> None:
    """Refuse a worker whose handlers are not exactly the registry's types for its service."""
    expected = contract.served_by(service)
    if set(handlers) != expected:
        missing, extra = sorted(expected - set(handlers)), sorted(set(handlers) - expected)
        raise RuntimeError(
            f"the {service} worker's handlers differ from the registry: missing {missing}, extra {extra}"
        )


class Worker:
    """Base class of a worker process serving one service."""

    service: ClassVar[str] = ""
    capacity: ClassVar[int] = 64
    handlers: ClassVar[dict[str, Handler]] = {}

    def __init__(self, credentials: wire.Credentials) -> None:
        check_handlers(self.service, self.handlers)
        self.credentials = credentials
        self.ctx = zmq.asyncio.Context()
        self.socket = self.ctx.socket(zmq.DEALER)
        self.socket.linger = 500
        # A fixed routing id keeps the broker's address for us valid across reconnects.
        self.socket.routing_id = credentials.public_key.encode()
        self.socket.curve_serverkey = credentials.server_key.encode()
        self.socket.curve_publickey = credentials.public_key.encode()
        self.socket.curve_secretkey = credentials.secret_key.encode()
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_heard = time.monotonic()
        self._stop = asyncio.Event()
        self.stop_reason = "signal"  # or "stop" (the broker's STOP), "broker_silent"

    async def run(self) -> int:
        """Serve until the broker says STOP, a signal arrives, or the broker is gone."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        self.socket.connect(self.credentials.endpoint)
        ready = wire.Ready(service=self.service, pid=os.getpid(), capacity=self.capacity)
        await self.socket.send_multipart([wire.TAG, wire.READY, wire.encode(ready)])
        loops = [asyncio.create_task(coro) for coro in (self._receive(), self._heartbeat(), self.background())]
        await self._stop.wait()
        for task in loops:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.credentials.heartbeat_interval * 2)
        await self.before_exit(self.stop_reason)
        self.ctx.destroy(linger=500)
        return 0

    async def background(self) -> None:
        """A service's own background work, cancelled at exit (default: none)."""

    async def before_exit(self, reason: str) -> None:
        """Last words of a service before the sockets close; *reason* says why it stops."""

    def handle_command(self, command: bytes, args: list[bytes]) -> None:
        """A broker command the base loop does not know (services extend this)."""
        log.warning("%s worker ignored unknown command %r", self.service, command[:16])

    async def _heartbeat(self) -> None:
        interval = self.credentials.heartbeat_interval
        while True:
            await self.socket.send_multipart([wire.TAG, wire.HEARTBEAT])
            await asyncio.sleep(interval)
            if time.monotonic() - self._last_heard > interval * 3:
                log.error("%s worker: broker silent; exiting", self.service)
                self.stop_reason = "broker_silent"
                self._stop.set()
                return

    async def _receive(self) -> None:
        while True:
            frames = await self.socket.recv_multipart()
            self._last_heard = time.monotonic()
            if len(frames) < 2 or frames[0] != wire.TAG:
                continue
            command = frames[1]
            if command == wire.REQUEST and len(frames) == 4:
                task = asyncio.create_task(self._serve(frames[2], frames[3]))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif command == wire.STOP:
                self.stop_reason = "stop"
                self._stop.set()
            elif command != wire.HEARTBEAT:
                try:
                    self.handle_command(command, frames[2:])
                except Exception:  # the receive loop must outlive one bad command
                    log.exception("%s worker failed on the command %r", self.service, command[:16])

    async def _serve(self, request_id: bytes, body: bytes) -> None:
        content = await self._answer(body)
        try:
            encoded = wire.encode(content)
        except (TypeError, ValueError, msgspec.EncodeError):
            log.exception("%s worker produced a reply it cannot encode", self.service)
            encoded = wire.encode(
                protocol.error_content(ErrorCode.INTERNAL_ERROR, "the worker failed to encode its reply")
            )
        if len(encoded) > wire.MAX_REPLY:  # the broker would drop the connection for it
            log.error(
                "%s worker: a reply of %d bytes is over the limit of %d", self.service, len(encoded), wire.MAX_REPLY
            )
            encoded = wire.encode(
                protocol.error_content(ErrorCode.INTERNAL_ERROR, "the answer is too large to send (see server log)")
            )
        with contextlib.suppress(zmq.ZMQError):
            await self.socket.send_multipart([wire.TAG, wire.REPLY, request_id, encoded])

    async def _answer(self, body: bytes) -> Reply | dict[str, Any]:
        try:
            request = wire.decode(body, wire.Request)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return protocol.error_content(ErrorCode.BAD_MESSAGE, f"worker could not read the request: {exc}")
        handler = self.handlers.get(request.msg_type)
        if handler is None:
            return protocol.error_content(
                ErrorCode.UNKNOWN_MESSAGE_TYPE, f"the {self.service} service does not handle {request.msg_type}"
            )
        serves = self.credentials.options.get("user")
        if serves is not None and request.user != serves:
            # A per-user worker acts with its user's rights only for that user.
            log.error("%s worker of %s refused a request for %s", self.service, serves, request.user)
            return protocol.error_content(ErrorCode.NOT_AUTHORIZED, f"this worker serves only {serves}")
        try:
            content = decode_content(request.content, contract.MESSAGES[request.msg_type].request)
        except ContentError as exc:
            return protocol.error_content(ErrorCode.BAD_REQUEST, f"{request.msg_type}: {exc}")
        try:
            return await handler(self, content, request)
        except SSDError as exc:
            return protocol.error_content(exc.code, exc.message)
        except Exception:
            log.exception("%s worker failed on %s", self.service, request.msg_type)
            return protocol.error_content(ErrorCode.INTERNAL_ERROR, "internal error in the worker (see server log)")

    def publish(self, event: str, content: dict[str, Any]) -> None:
        """Ask the broker to publish an event of its user (no secrets: every subscriber sees it); the broker
        checks it against the kind's schema and picks the topic (ssd.broker.worker_events)."""
        self.socket.send_multipart([wire.TAG, wire.EVENT, event.encode(), wire.encode(content)])

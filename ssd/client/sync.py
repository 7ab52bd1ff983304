"""``Client``: the blocking twin of ``AsyncClient``, derived from it, not rewritten.

Each method runs the async method to completion on a private event loop, so a
script or a Qt application without asyncio can use ssd directly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterator
from types import TracebackType
from typing import Any, TypeVar

from ssd import contract, replies
from ssd.client.connection import AsyncClient, Event
from ssd.messages import EnvCreateRequest, EnvInstallRequest, RequestContent

__all__ = ["Client"]

T = TypeVar("T")
Q = TypeVar("Q", bound=RequestContent)
R = TypeVar("R", bound=replies.Reply)


class Client:
    """A blocking connection to one ssd daemon; takes AsyncClient's arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._async = AsyncClient(*args, **kwargs)

    @property
    def aclient(self) -> AsyncClient:
        """The underlying async client (its attributes: spec, server_key, fingerprint...)."""
        return self._async

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine that uses ``aclient`` on this client's loop (for multi-step work)."""
        return self._run(coro)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        task = self._loop.create_task(coro)
        try:
            return self._loop.run_until_complete(task)
        except BaseException:
            # Ctrl-C can land while the task is suspended: finish it here so the
            # loop (and async generators on it) can still be closed cleanly.
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    self._loop.run_until_complete(task)
            raise

    def __enter__(self) -> Client:
        try:
            self.connect()
        except BaseException:
            self.close()  # __exit__ will not run: do not leak the private loop
            raise
        return self

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType] | None) -> None:
        self.close()

    def connect(self) -> None:
        """See AsyncClient.connect."""
        self._run(self._async.connect())

    def request(
        self, msg_type: str, content: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """See AsyncClient.request."""
        return self._run(self._async.request(msg_type, content, timeout=timeout))

    def call(self, message: contract.MessageType[Q, R], content: Q, *, timeout: float | None = None) -> R:
        """See AsyncClient.call."""
        return self._run(self._async.call(message, content, timeout=timeout))

    def ping(self, data: str = "") -> replies.PingReply:
        """See AsyncClient.ping."""
        return self._run(self._async.ping(data))

    def server_info(self) -> replies.ServerInfoReply:
        """See AsyncClient.server_info."""
        return self._run(self._async.server_info())

    def login(self, username: str, password: str | None = None) -> replies.LoginReply:
        """See AsyncClient.login."""
        return self._run(self._async.login(username, password))

    def logout(self) -> replies.LogoutReply:
        """See AsyncClient.logout."""
        return self._run(self._async.logout())

    def whoami(self) -> replies.WhoamiReply:
        """See AsyncClient.whoami."""
        return self._run(self._async.whoami())

    def key_add(self, comment: str = "") -> replies.KeyAddReply:
        """See AsyncClient.key_add."""
        return self._run(self._async.key_add(comment))

    def key_remove(
        self, key: str | None = None, *, all_keys: bool = False, dry_run: bool = False
    ) -> replies.KeyRemoveReply:
        """See AsyncClient.key_remove."""
        return self._run(self._async.key_remove(key, all_keys=all_keys, dry_run=dry_run))

    def env_list(self) -> replies.EnvListReply:
        """See AsyncClient.env_list."""
        return self._run(self._async.env_list())

    def env_info(self, env: str) -> replies.EnvInfoReply:
        """See AsyncClient.env_info."""
        return self._run(self._async.env_info(env))

    def env_create(self, content: EnvCreateRequest) -> replies.EnvOperationReply:
        """See AsyncClient.env_create."""
        return self._run(self._async.env_create(content))

    def env_install(self, content: EnvInstallRequest) -> replies.EnvOperationReply:
        """See AsyncClient.env_install."""
        return self._run(self._async.env_install(content))

    def env_remove(self, env: str) -> replies.EnvOperationReply:
        """See AsyncClient.env_remove."""
        return self._run(self._async.env_remove(env))

    def env_cancel(self, operation: str) -> replies.EnvCancelReply:
        """See AsyncClient.env_cancel."""
        return self._run(self._async.env_cancel(operation))

    def echo(self, data: str = "", delay: float = 0.0) -> replies.EchoReply:
        """See AsyncClient.echo."""
        return self._run(self._async.echo(data, delay))

    def connection_info(self, connection: dict[str, Any]) -> dict[str, Any]:
        """See AsyncClient.connection_info."""
        return self._async.connection_info(connection)

    def sealed_connection_info(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """See AsyncClient.sealed_connection_info."""
        return self._async.sealed_connection_info(event)

    def kernel_start(self, env: str, kind: str = "spyder", **options: Any) -> replies.KernelStartReply:
        """See AsyncClient.kernel_start."""
        return self._run(self._async.kernel_start(env, kind, **options))

    def kernel_list(self, *, spares: bool = False) -> list[replies.KernelDescription]:
        """See AsyncClient.kernel_list."""
        return self._run(self._async.kernel_list(spares=spares))

    def kernel_info(self, kernel: str) -> replies.KernelInfoReply:
        """See AsyncClient.kernel_info."""
        return self._run(self._async.kernel_info(kernel))

    def kernel_interrupt(self, kernel: str, mode: str | None = None) -> replies.KernelInterruptReply:
        """See AsyncClient.kernel_interrupt."""
        return self._run(self._async.kernel_interrupt(kernel, mode))

    def kernel_restart(self, kernel: str, **options: Any) -> replies.KernelRestartReply:
        """See AsyncClient.kernel_restart."""
        return self._run(self._async.kernel_restart(kernel, **options))

    def kernel_shutdown(self, kernel: str, **options: Any) -> replies.KernelShutdownReply:
        """See AsyncClient.kernel_shutdown."""
        return self._run(self._async.kernel_shutdown(kernel, **options))

    def kernel_lease(self, kernel: str, action: str = "renew", lease: float | None = None) -> replies.KernelLeaseReply:
        """See AsyncClient.kernel_lease."""
        return self._run(self._async.kernel_lease(kernel, action, lease))

    def spares(self, env: str, count: int) -> replies.SparesReply:
        """See AsyncClient.spares."""
        return self._run(self._async.spares(env, count))

    def events(self, topics: tuple[str, ...] = ("",), *, port: int | None = None) -> Iterator[Event]:
        """See AsyncClient.events."""
        stream = self._async.events(topics, port=port)
        try:
            while True:
                yield self._run(stream.__anext__())
        finally:
            self._run(stream.aclose())

    def close(self) -> None:
        """Close the connection and the private event loop."""
        if not self._loop.is_closed():
            self._run(self._async.close())
            self._loop.close()

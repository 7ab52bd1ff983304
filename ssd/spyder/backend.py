"""Every call the Spyder plugin makes into ssd's client library, in one adapter module.

The plugin's widgets never see an ``AsyncClient`` or a reply dict: they call
``Backend`` methods, which run in the plugin's network thread
(``ssd.spyder.loop``) and answer with the records of ``ssd.spyder.models`` on
the Qt main thread. One ``AsyncClient`` per host is kept, connected on first
use and opened again after a transport error (a daemon that restarted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import zmq

from ssd import contract
from ssd.client import AsyncClient, KnownHosts
from ssd.client.connection import typed_reply, until_subscribed
from ssd.client.discovery import AsyncBrowser, Change
from ssd.client.hostspec import HostSpec, parse_host
from ssd.client.identity import client_keypair
from ssd.client.kernels import START_TIMEOUT
from ssd.errors import ErrorCode, SSDError, TransportError
from ssd.replies import EnvOperationReply, KernelStartReply
from ssd.spyder.jobwait import JobStart, watch_ends
from ssd.spyder.loop import LoopThread
from ssd.spyder.models import ConnectInfo, EnvRow, HostRow, JobState, KernelRow, Progress, StartedKernel
from ssd.spyder.rows import env_row, host_row, kernel_row, progress, slurm_host
from ssd.topics import ENV_PROGRESS, user_topic

__all__ = ["Backend", "Callback", "parse_host"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Callback = Callable[[Any, BaseException | None], None]
SLURM_WAIT = 86400.0  # seconds a start in a Slurm job may wait for the job (as ssd-ctl start --slurm)


class Backend:
    """The plugin's side of ssd: discovery, sessions per host, environments, kernels and leases."""

    def __init__(self, spyder_version: str, client_dir: Path | None = None, timeout: float = 10.0) -> None:
        self.spyder_version = spyder_version
        self.timeout = timeout
        self.identity = client_keypair(client_dir) if client_dir else client_keypair()
        self.known_hosts = KnownHosts(client_dir / "known_hosts") if client_dir else KnownHosts()
        self.thread = LoopThread()
        self._clients: dict[str, AsyncClient] = {}
        # Leases by (host name, kernel id): a host found again on a new port (a restarted daemon) keeps them.
        self._leases: dict[tuple[str, str], float] = {}
        self._latest: dict[str, HostSpec] = {}  # the newest address each host name was reached at
        self._lease_task: asyncio.Task[None] | None = None
        self._browser: AsyncBrowser | None = None
        self._watchers: dict[str, asyncio.Task[None]] = {}  # by host: kernel ends of Slurm consoles

    # -- plumbing -----------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, Any], callback: Callback) -> None:
        self.thread.call(coro, callback)

    async def _client(self, spec: HostSpec) -> AsyncClient:
        """The connected client for *spec* (connected now if need be)."""
        self._latest[spec.host] = spec
        client = self._clients.get(spec.key)
        if client is not None and client.spec == spec:
            return client
        if client is not None:
            await client.close()
        client = AsyncClient(
            spec, timeout=self.timeout, identity=self.identity, known_hosts=self.known_hosts, connect_timeout=5.0
        )
        await client.connect()
        self._clients[spec.key] = client
        return client

    async def _request(self, spec: HostSpec, call: Callable[[AsyncClient], Coroutine[Any, Any, T]]) -> T:
        """Run *call* on the host's client; a transport error drops the client so the next call connects again."""
        client = await self._client(spec)
        try:
            return await call(client)
        except TransportError:
            self._clients.pop(spec.key, None)
            await client.close()
            raise

    # -- discovery ----------------------------------------------------------------------

    def start_discovery(self, on_change: Callable[[str, HostRow], None]) -> None:
        """Browse for ssd hosts; ``on_change(kind, row)`` runs on the Qt thread for each added/updated/removed."""

        def changed(change: Change) -> None:
            row = host_row(change.host)
            self.thread.emit_soon(lambda value, _error: on_change(change.kind, value), row)

        async def start() -> None:
            self._browser = AsyncBrowser(known_hosts=self.known_hosts, on_change=changed)
            await self._browser.start()

        def started(_result: object, error: BaseException | None) -> None:
            if error is not None:
                log.warning("ssd: discovery did not start: %s", error)

        self._call(start(), started)

    # -- trust and login ----------------------------------------------------------------

    def connect(self, spec: HostSpec, callback: Callback) -> None:
        """Connect (verifying the key); answers ConnectInfo, or ServerUntrusted / ServerKeyMismatch / Unreachable."""

        async def run() -> ConnectInfo:
            client = await self._client(spec)
            info = await client.server_info()
            try:
                user: str | None = (await client.whoami()).user
            except SSDError:
                user = None
            # server_info tells no kernel count (the announcement does): the pane keeps the announced one.
            status = {"os": info.os, "cpus": str(info.cpus), "kernels": ""}
            status["load"] = f"{info.load[0]:.1f}" if info.load else ""
            return ConnectInfo(client.fingerprint, info.name or spec.host, user, status, slurm_host(info))

        self._call(run(), callback)

    def trust(self, spec: HostSpec, public_key: bytes, callback: Callback) -> None:
        """Pin exactly the key the user was shown (never a key offered later), then connect."""
        self.known_hosts.pin(spec.key, public_key)
        self.connect(spec, callback)

    def login(self, spec: HostSpec, user: str, password: str | None, copy_id: bool, callback: Callback) -> None:
        """Log in by password (None: by an authorized key); with *copy_id* authorize this key from now on."""

        async def run() -> str:
            client = await self._client(spec)
            reply = await client.login(user, password)
            if copy_id:
                await client.key_add("ssd Spyder plugin")
            return reply.user

        self._call(run(), callback)

    # -- environments -------------------------------------------------------------------

    def envs(self, spec: HostSpec, callback: Callback) -> None:
        """The user's environments with the verdict for this Spyder."""

        async def run() -> list[EnvRow]:
            reply = await self._request(spec, lambda c: c.env_list())
            return [env_row(msgspec.to_builtins(entry), self.spyder_version) for entry in reply.envs]

        self._call(run(), callback)

    def env_operation(
        self,
        spec: HostSpec,
        kind: str,
        content: dict[str, Any],
        on_progress: Callable[[Progress], None],
        callback: Callback,
    ) -> None:
        """``env_install`` or ``env_create`` (*kind*), progress events to *on_progress*; answers the last Progress."""
        message: contract.MessageType[Any, EnvOperationReply] = contract.ENV_INSTALL
        if kind == "create":
            message = contract.ENV_CREATE

        async def run() -> Progress:
            client = await self._client(spec)
            user = (await client.whoami()).user
            subscribed = asyncio.Event()
            events = client.events((user_topic(ENV_PROGRESS, user),), subscribed=subscribed)
            first = asyncio.ensure_future(anext(events))
            await until_subscribed(subscribed)  # a quick operation's last event must not come before it
            try:
                # The dialog's fields as they are: the host checks them and names a bad one.
                raw = await client.request(message.msg_type, {**content, "spyder": self.spyder_version})
                operation = typed_reply(message, raw).operation
                pending = first
                while True:
                    event = await pending
                    pending = asyncio.ensure_future(anext(events))
                    if event.content.get("operation") != operation:
                        continue
                    step = progress(event.content)
                    self.thread.emit_soon(lambda value, _e: on_progress(value), step)
                    if step.state != "running":
                        pending.cancel()
                        return step
            finally:
                first.cancel()
                with contextlib.suppress(BaseException):
                    await first
                await events.aclose()

        self._call(run(), callback)

    def env_cancel(self, spec: HostSpec, operation: str, callback: Callback) -> None:
        """Ask the host to stop a running operation."""
        self._call(self._request(spec, lambda c: c.env_cancel(operation)), callback)

    # -- kernels ------------------------------------------------------------------------

    def kernel_start(
        self,
        spec: HostSpec,
        env: str,
        cwd: str | None,
        lease: float,
        callback: Callback,
        job: tuple[JobStart, Callable[[JobState], None]] | None = None,
    ) -> None:
        """Start a Spyder kernel with a lease this backend renews; answers StartedKernel.

        With *job* (a JobStart and its callback) the kernel runs in a Slurm job with the JobStart's options: its
        states reach the callback on the Qt thread while the start waits, and its lease is renewed from the
        moment its id is known."""

        async def run() -> StartedKernel:
            client = await self._client(spec)
            where: dict[str, Any] = {} if job is None else {"placement": "slurm", "slurm": job[0].options}
            timeout = START_TIMEOUT if job is None else SLURM_WAIT

            def start(token: str = "") -> Coroutine[Any, Any, KernelStartReply]:
                name = f"spyder {env}"[:100]
                return client.kernel_start(
                    env, "spyder", cwd=cwd, lease=lease, name=name, timeout=timeout, start_token=token, **where
                )

            if job is None:
                reply = await start()
            else:
                follower, on_state = job
                renew = lambda kernel_id: self._keep_lease(spec, kernel_id, lease)  # noqa: E731
                reply = await follower.follow(client, start, renew, self._on_qt(on_state))
            started = StartedKernel(kernel_row(reply.kernel), client.connection_info(reply.connection))
            self._keep_lease(spec, started.kernel.kernel_id, lease)
            return started

        self._call(run(), callback)

    def cancel_start(self, spec: HostSpec, job: JobStart, callback: Callback) -> None:
        """Cancel a start in a Slurm job (scancel while queued); answers the kernel id ("": none made yet)."""

        async def run() -> str:
            kernel_id = await job.cancel()
            self._leases.pop((spec.host, kernel_id), None)
            return kernel_id

        self._call(run(), callback)

    def watch_ends(self, spec: HostSpec, kernel_ids: set[str], on_end: Callable[[JobState], None]) -> None:
        """Follow the host's kernel events for the ends of *kernel_ids* (a live set) until close; once per host."""

        async def run() -> None:
            try:
                await watch_ends(await self._client(spec), kernel_ids, self._on_qt(on_end))
            except (SSDError, zmq.ZMQError) as exc:  # the connection closed: the next console watches again
                log.info("ssd: kernel events of %s not followed any more: %s", spec, exc)
            finally:
                self._watchers.pop(spec.key, None)

        async def begin() -> None:
            if spec.key not in self._watchers:
                self._watchers[spec.key] = asyncio.get_running_loop().create_task(run())

        self._call(begin(), lambda _r, _e: None)

    def _on_qt(self, callback: Callable[[T], None]) -> Callable[[T], None]:
        """*callback* run on the Qt thread, from the loop."""
        return lambda value: self.thread.emit_soon(lambda got, _error: callback(got), value)

    def kernel_info(self, spec: HostSpec, kernel_id: str, callback: Callback) -> None:
        """One kernel with its connection info as this client reaches it (to attach or re-attach)."""

        async def run() -> StartedKernel:
            reply = await self._request(spec, lambda c: c.kernel_info(kernel_id))
            client = self._clients[spec.key]
            return StartedKernel(kernel_row(reply.kernel), client.connection_info(reply.connection))

        self._call(run(), callback)

    def kernels(self, spec: HostSpec, callback: Callback) -> None:
        """The user's running kernels on the host."""

        async def run() -> list[KernelRow]:
            return [kernel_row(entry) for entry in await self._request(spec, lambda c: c.kernel_list())]

        self._call(run(), callback)

    def kernel_interrupt(self, spec: HostSpec, kernel_id: str, callback: Callback) -> None:
        """Interrupt the running cell through the host: always a signal (an env's kernelspec may ask for a message,
        which the kernel's control thread would turn into a signal to itself: see ConsoleManager.interrupt)."""
        self._call(self._request(spec, lambda c: c.kernel_interrupt(kernel_id, "signal")), callback)

    def kernel_restart(self, spec: HostSpec, kernel_id: str, callback: Callback) -> None:
        """A new process with the same id, ports and key; answers StartedKernel."""

        async def run() -> StartedKernel:
            await self._request(spec, lambda c: c.kernel_restart(kernel_id))
            # The restart reply carries no connection info (same ports and key): ask for it, as an attach does.
            reply = await self._request(spec, lambda c: c.kernel_info(kernel_id))
            connection = self._clients[spec.key].connection_info(reply.connection)
            return StartedKernel(kernel_row(reply.kernel), connection)

        self._call(run(), callback)

    def kernel_shutdown(self, spec: HostSpec, kernel_id: str, callback: Callback) -> None:
        """Stop the kernel on the host and stop renewing its lease."""
        self._leases.pop((spec.host, kernel_id), None)
        self._call(self._request(spec, lambda c: c.kernel_shutdown(kernel_id)), callback)

    def kernel_detach(self, spec: HostSpec, kernel_id: str, callback: Callback) -> None:
        """Leave the kernel running for good: its lease is dropped (``detach``) and no longer renewed."""
        self._leases.pop((spec.host, kernel_id), None)
        self._call(self._request(spec, lambda c: c.kernel_lease(kernel_id, "detach")), callback)

    def shutdown_now(self, targets: list[tuple[HostSpec, str]], timeout: float = 30.0) -> list[str]:
        """Shut kernels down and wait (Spyder is quitting); answers the errors met, as sentences."""
        return self._end_now(targets, lambda c, k: c.kernel_shutdown(k), timeout)

    def detach_now(self, targets: list[tuple[HostSpec, str]], timeout: float = 30.0) -> list[str]:
        """Leave kernels running for good and wait (Spyder is quitting); answers the errors met."""
        return self._end_now(targets, lambda c, k: c.kernel_lease(k, "detach"), timeout)

    def _end_now(
        self,
        targets: list[tuple[HostSpec, str]],
        call: Callable[[AsyncClient, str], Coroutine[Any, Any, Any]],
        timeout: float,
    ) -> list[str]:
        async def one(spec: HostSpec, kernel_id: str) -> str | None:
            self._leases.pop((spec.host, kernel_id), None)
            try:
                await self._request(spec, lambda c: call(c, kernel_id))
            except SSDError as exc:
                return f"{kernel_id} on {spec}: {exc}"
            return None

        async def run() -> list[str]:
            found = await asyncio.gather(*(one(spec, kernel_id) for spec, kernel_id in targets))
            return [text for text in found if text]

        return self.thread.submit(run()).result(timeout)

    # -- leases -------------------------------------------------------------------------

    def _keep_lease(self, spec: HostSpec, kernel_id: str, lease: float) -> None:
        """Renew the kernel's lease from this loop while Spyder lives (one task for every kernel)."""
        self._leases[(spec.host, kernel_id)] = lease
        if self._lease_task is None or self._lease_task.done():
            self._lease_task = asyncio.get_running_loop().create_task(self._renew_leases())

    def keep_lease(self, spec: HostSpec, kernel_id: str, lease: float) -> None:
        """From the Qt thread: renew an attached kernel's lease too."""

        async def run() -> None:
            self._keep_lease(spec, kernel_id, lease)

        self._call(run(), lambda _r, _e: None)

    async def _renew_leases(self) -> None:
        while self._leases:
            await asyncio.sleep(max(min(self._leases.values()) / 3, 0.5))
            for host, kernel_id in list(self._leases):
                await self._renew(self._latest[host], kernel_id)

    async def _renew(self, spec: HostSpec, kernel_id: str) -> None:
        try:
            await self._request(spec, lambda c: c.kernel_lease(kernel_id))
        except SSDError as exc:
            if exc.code == ErrorCode.KERNEL_NOT_FOUND:
                self._leases.pop((spec.host, kernel_id), None)
            log.info("ssd: lease of %s on %s not renewed: %s", kernel_id, spec, exc)

    # -- end ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop browsing, close every connection and the network thread."""

        async def run() -> None:
            watchers = list(self._watchers.values())
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            if self._browser is not None:
                await self._browser.close()
            for client in list(self._clients.values()):
                await client.close()
            self._clients.clear()

        with contextlib.suppress(Exception):
            self.thread.submit(run()).result(15.0)
        self.thread.stop()

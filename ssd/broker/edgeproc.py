"""Start the edge process (``ssd.edge``), restart it at once when it dies, stop it on shutdown.

Each spawn gets a fresh link keypair (only that key passes the link's ZAP
policy) and its credentials, with the server's secret key, on its stdin pipe,
which stays open: the edge exits when the broker closes it or dies. In system
mode it runs as ``server.edge_user`` with no supplementary groups; always with
``python -I``, cwd ``/``, a minimal environment and few malloc arenas (so that
its data limit measures what it holds, not what glibc reserved per thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import zmq

from ssd.broker.sockets import endpoint
from ssd.broker.supervisor import describe_exit
from ssd.config import Config
from ssd.edge.link import EdgeCredentials
from ssd.errors import ConfigError
from ssd.isolation import python_module
from ssd.keys import KeyPair
from ssd.users import Account, lookup

__all__ = ["EdgeKeeper", "EdgeSpec", "edge_account", "edge_credentials"]

log = logging.getLogger(__name__)

RESTART_DELAY = 0.1  # no growing backoff: while no edge runs, nobody can reach the daemon
_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "MALLOC_ARENA_MAX": "2"}


@dataclass(frozen=True)
class EdgeSpec:
    """What every edge gets: credentials without the per-spawn keys, and whom to run as (None: ourselves)."""

    credentials: EdgeCredentials
    account: Account | None


def edge_account(mode: str, edge_user: str) -> Account | None:
    """Whom the edge runs as: ``server.edge_user`` in system mode, ourselves (None) in user mode."""
    if mode == "user":
        return None
    account = lookup(edge_user)
    if account is None:
        raise ConfigError(
            f"server.edge_user is {edge_user!r}, which is no account on this host; "
            "create it (useradd --system --no-create-home --shell /usr/sbin/nologin NAME) or name another"
        )
    return account


def edge_credentials(
    config: Config, keys: KeyPair, listeners: dict[str, socket.socket], link_port: int
) -> EdgeCredentials:
    """What every edge gets (the link keypair is made per spawn): the public listeners and the limits."""
    server, auth = config.server, config.auth
    ports = {name: sock.getsockname()[1] for name, sock in listeners.items()}
    return EdgeCredentials(
        link_endpoint=f"tcp://127.0.0.1:{link_port}",
        link_public="",  # made per spawn by EdgeKeeper
        link_secret="",
        server_public=keys.public.decode(),
        server_secret=keys.secret.decode(),
        control_fd=listeners["control"].fileno(),
        events_fd=listeners["events"].fileno(),
        control_endpoint=endpoint(server.bind, ports["control"]),
        events_endpoint=endpoint(server.bind, ports["events"]),
        ipv6=server.bind == "*" or ":" in server.bind,
        hwm=server.hwm,
        max_message_size=server.max_message_size,
        connection_burst=auth.connection_burst,
        connection_rate=auth.connection_rate,
        memory_limit=server.edge_memory_limit << 20,
        flood_threshold=server.edge_flood_threshold << 20,
        log_level=server.log_level,
    )


class EdgeKeeper:
    """Keeps one edge process running until stop()."""

    def __init__(self, spec: EdgeSpec, *, on_spawn: Callable[[str], None]) -> None:
        self._spec = spec
        self._on_spawn = on_spawn  # told the new link key before the process starts
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.restarts = 0

    @property
    def stopping(self) -> bool:
        """True once stop() began (an edge that exits then is not restarted)."""
        return self._stopping

    @property
    def pid(self) -> int | None:
        """The running edge's pid, if one runs."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    def start(self) -> None:
        """Begin keeping the edge running (call inside the event loop)."""
        self._task = asyncio.create_task(self._keep_running(), name="keep the edge running")

    async def _keep_running(self) -> None:
        while not self._stopping:
            try:
                code: int | None = await self._run_once()
            except OSError as exc:
                log.error("cannot start the edge: %s", exc)
                code = None
            if self.stopping:
                return
            self.restarts += 1
            log.warning("the edge exited (%s); starting a new one", describe_exit(code))
            await asyncio.sleep(RESTART_DELAY)

    async def _run_once(self) -> int:
        public, secret = zmq.curve_keypair()
        self._on_spawn(public.decode())
        credentials = msgspec.structs.replace(
            self._spec.credentials, link_public=public.decode(), link_secret=secret.decode()
        )
        fds = (credentials.control_fd, credentials.events_fd)
        process = await asyncio.create_subprocess_exec(
            *python_module("ssd.edge"), stdin=asyncio.subprocess.PIPE, pass_fds=fds, **self._as_edge()
        )
        self._process = process
        log.info("started the edge (pid %d)", process.pid)
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            process.stdin.write(msgspec.json.encode(credentials) + b"\n")
            await process.stdin.drain()
        try:
            return await process.wait()
        finally:
            process.stdin.close()

    def _as_edge(self) -> dict[str, Any]:
        options: dict[str, Any] = {"cwd": "/", "env": _ENV, "start_new_session": True}
        account = self._spec.account
        if account is not None and account.uid != os.geteuid():
            options.update(user=account.uid, group=account.gid, extra_groups=[])
        return options

    async def stop(self, grace: float) -> None:
        """Close the edge's stdin (it exits), SIGKILL it after *grace* seconds, reap it."""
        self._stopping = True
        process = self._process
        if process is not None and process.stdin is not None:
            process.stdin.close()
        if process is not None and process.returncode is None:
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                log.warning("the edge did not exit within %gs; killing it", grace)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

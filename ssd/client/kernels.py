"""Kernel requests of the client: start, list, info, interrupt, restart, shut down.

A mixin of ``AsyncClient``. Connection info in replies is rewritten for this
client's side of the network by ``ssd.kernels.connection.client_info``. Every
kernel id a reply carries is checked to be a UUID here, at the boundary:
ssd-ctl and the provisioner build file names from it, and a server is not
trusted to choose paths on the client.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from ssd.client.hostspec import HostSpec
from ssd.errors import SSDError
from ssd.kernels.connection import client_info
from ssd.keys import KeyPair
from ssd.sealed import SealError, open_sealed, sealed_context

__all__ = ["KernelCalls", "checked_kernel_id", "write_connection_file"]

# A kernel answers kernel_info within the host's start_timeout (60 s by default); wait a bit longer.
START_TIMEOUT = 90.0


class KernelCalls:
    """Kernel requests, for a class that has ``request`` and ``spec`` (AsyncClient)."""

    spec: HostSpec
    identity: KeyPair
    server_key: bytes | None

    async def request(
        self, msg_type: str, content: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Implemented by AsyncClient."""
        raise NotImplementedError

    def sealed_connection_info(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The connection info sealed for this client's key in a ``kernel_state`` event (ready, restarted)
        of its user's kernel, as this client reaches it; None when the event holds none for this key, or when
        the box was not sealed by the server this client is connected to (see ssd.sealed)."""
        sealed = event.get("sealed_connection")
        if sealed is None or self.server_key is None:
            return None
        context = sealed_context(str(event.get("kernel_id")))
        try:
            plain = open_sealed(sealed, self.identity.public, self.identity.secret, context, sender=self.server_key)
        except SealError:
            return None
        return self.connection_info({"connection": json.loads(plain)})

    def connection_info(self, reply: dict[str, Any]) -> dict[str, Any]:
        """The classic connection info of a kernel_start or kernel_info reply, as this client reaches it."""
        return client_info(reply["connection"], self.spec.address or self.spec.host)

    async def kernel_start(
        self,
        env: str,
        kind: str = "spyder",
        *,
        cwd: str | None = None,
        env_vars: dict[str, str] | None = None,
        name: str = "",
        restart: bool = False,
        lease: float | None = None,
        label: str = "",
        timeout: float = START_TIMEOUT,
    ) -> dict[str, Any]:
        """Start a kernel in *env*; returns once it answered kernel_info (id, connection, kernel_info, timing).

        With *lease* (seconds) the kernel is held only while this client renews it (``kernel_lease``).
        *label* says what the frontend shows it for (a notebook's path, "spyder"); an older host has none.
        """
        content: dict[str, Any] = {"env": env, "kind": kind, "name": name, "restart": restart}
        if label:
            content["label"] = label
        if lease is not None:
            content["lease"] = lease
        if cwd is not None:
            content["cwd"] = cwd
        if env_vars:
            content["env_vars"] = env_vars
        return _with_kernel(await self.request("kernel_start_request", content, timeout=timeout))

    async def kernel_list(self) -> list[dict[str, Any]]:
        """This user's kernels on the host."""
        kernels = (await self.request("kernel_list_request")).get("kernels")
        if not isinstance(kernels, list):
            raise SSDError("the server's kernel list is malformed (no list of kernels)", code="bad_reply")
        return [_kernel(entry) for entry in kernels]

    async def kernel_info(self, kernel: str) -> dict[str, Any]:
        """One kernel, with its connection info (to attach again)."""
        return _with_kernel(await self.request("kernel_info_request", {"kernel": kernel}))

    async def kernel_interrupt(self, kernel: str, mode: str | None = None) -> dict[str, Any]:
        """Interrupt the running cell (by the kernelspec's mode unless *mode* is given)."""
        content: dict[str, Any] = {"kernel": kernel}
        if mode is not None:
            content["mode"] = mode
        return await self.request("kernel_interrupt_request", content)

    async def kernel_restart(self, kernel: str, *, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        """A new process with the same id, ports and key."""
        return _with_kernel(await self.request("kernel_restart_request", {"kernel": kernel}, timeout=timeout))

    async def kernel_shutdown(self, kernel: str, *, keep: bool = False, timeout: float = 30.0) -> dict[str, Any]:
        """Stop the kernel (politely, then by force); its connection file is removed.

        With *keep* the process is killed at once and the kernel stays listed as dead, restartable in place.
        """
        content: dict[str, Any] = {"kernel": kernel}
        if keep:
            content["keep"] = True
        return await self.request("kernel_shutdown_request", content, timeout=timeout)

    async def kernel_lease(self, kernel: str, action: str = "renew", lease: float | None = None) -> dict[str, Any]:
        """Renew the kernel's lease (for *lease* seconds, default the one it has), or ``detach`` it for good."""
        content: dict[str, Any] = {"kernel": kernel, "action": action}
        if lease is not None:
            content["lease"] = lease
        return await self.request("kernel_lease_request", content)


def checked_kernel_id(value: object) -> str:
    """*value* if it is a kernel id as ssd makes them (a canonical UUID); else refuse it with a clear error."""
    if isinstance(value, str):
        try:
            if str(uuid.UUID(value)) == value:
                return value
        except ValueError:
            pass
    raise SSDError(
        f"the server sent an invalid kernel id {str(value)[:80]!r} (a kernel id is a UUID)", code="bad_reply"
    )


def _kernel(entry: object) -> dict[str, Any]:
    """One kernel description of a reply, its id checked."""
    if not isinstance(entry, dict):
        raise SSDError("the server's kernel description is malformed (not an object)", code="bad_reply")
    checked_kernel_id(entry.get("kernel_id"))
    return entry


def _with_kernel(reply: dict[str, Any]) -> dict[str, Any]:
    """A reply about one kernel, its id checked."""
    _kernel(reply.get("kernel"))
    return reply


def write_connection_file(path: str | Path, info: dict[str, Any]) -> Path:
    """Write a classic connection file, 0600, replacing any file there (atomically)."""
    target = Path(path).expanduser()
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(info, fh, indent=1)
        fh.write("\n")
    tmp.replace(target)
    return target

"""Kernel requests of the client: start, list, info, interrupt, restart, shut down.

A mixin of ``AsyncClient``. Connection info in replies is rewritten for this
client's side of the network by ``ssd.kernels.connection.client_info``. Every
kernel id a reply carries is checked to be a UUID here, at the boundary:
ssd-ctl and the provisioner build file names from it, and a server is not
trusted to choose paths on the client.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import msgspec

from ssd import contract
from ssd.client.hostspec import HostSpec
from ssd.errors import ErrorCode, SSDError
from ssd.files import write_atomic
from ssd.kernels.connection import client_info
from ssd.keys import KeyPair
from ssd.messages import (
    KernelInfoRequest,
    KernelInterruptRequest,
    KernelKind,
    KernelLeaseRequest,
    KernelListRequest,
    KernelRestartRequest,
    KernelShutdownRequest,
    KernelStartRequest,
    RequestContent,
    SlurmOptions,
    SparesRequest,
)
from ssd.replies import (
    KernelDescription,
    KernelInfoReply,
    KernelInterruptReply,
    KernelLeaseReply,
    KernelRestartReply,
    KernelShutdownReply,
    KernelStartReply,
    Reply,
    SparesReply,
)
from ssd.sealed import SealError, open_sealed, sealed_context

__all__ = ["START_TIMEOUT", "KernelCalls", "checked_kernel_id", "write_connection_file"]

Q = TypeVar("Q", bound=RequestContent)
R = TypeVar("R", bound=Reply)

# A kernel answers kernel_info within the host's start_timeout (60 s by default); wait a bit longer.
START_TIMEOUT = 90.0


class KernelCalls:
    """Kernel requests, for a class that has ``call`` and ``spec`` (AsyncClient)."""

    spec: HostSpec
    identity: KeyPair
    server_key: bytes | None

    async def call(self, message: contract.MessageType[Q, R], content: Q, *, timeout: float | None = None) -> R:
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
        return self.connection_info(json.loads(plain))

    def connection_info(self, connection: dict[str, Any]) -> dict[str, Any]:
        """The classic connection info of a kernel (a start or info reply's *connection*), as this client
        reaches it."""
        return client_info(connection, self.spec.address or self.spec.host)

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
        placement: str = "local",
        slurm: dict[str, Any] | None = None,
        start_token: str = "",
        timeout: float = START_TIMEOUT,
    ) -> KernelStartReply:
        """Start a kernel in *env*; returns once it answered kernel_info (id, connection, kernel_info, timing).

        With *lease* (seconds) the kernel is held only while this client renews it (``kernel_lease``).
        *label* says what the frontend shows it for (a notebook's path, "spyder"); an older host has none.
        *placement* ``slurm`` starts it in a Slurm job with the resources *slurm* names (partition, time, cpus,
        mem, gpus); the reply comes once the job ran and the kernel answered, ``queued`` events meanwhile.
        *start_token* names this start in its kernel's events and kernel_list entry (``ssd.client.startwatch``).
        """
        # The server checks kind, mode and action (a newer server may know values this client does not).
        content = KernelStartRequest(
            env=env,
            kind=cast(KernelKind, kind),
            cwd=cwd,
            env_vars=env_vars or {},
            name=name,
            label=label,
            restart=restart,
            lease=lease,
            placement=cast(Literal["local", "slurm"], placement),
            slurm=msgspec.convert(slurm, SlurmOptions) if slurm is not None else None,
            start_token=start_token,
        )
        return _checked(await self.call(contract.KERNEL_START, content, timeout=timeout))

    async def kernel_list(self, *, spares: bool = False) -> list[KernelDescription]:
        """This user's kernels on the host (with *spares*: their spare kernels alone)."""
        kernels = (await self.call(contract.KERNEL_LIST, KernelListRequest(spares=spares))).kernels
        for entry in kernels:
            checked_kernel_id(entry.kernel_id)
        return kernels

    async def kernel_info(self, kernel: str) -> KernelInfoReply:
        """One kernel, with its connection info (to attach again)."""
        return _checked(await self.call(contract.KERNEL_INFO, KernelInfoRequest(kernel=kernel)))

    async def kernel_interrupt(self, kernel: str, mode: str | None = None) -> KernelInterruptReply:
        """Interrupt the running cell (by the kernelspec's mode unless *mode* is given)."""
        content = KernelInterruptRequest(kernel=kernel, mode=cast(Literal["signal", "message"] | None, mode))
        return await self.call(contract.KERNEL_INTERRUPT, content)

    async def kernel_restart(self, kernel: str, *, timeout: float = START_TIMEOUT) -> KernelRestartReply:
        """A new process with the same id, ports and key."""
        reply = await self.call(contract.KERNEL_RESTART, KernelRestartRequest(kernel=kernel), timeout=timeout)
        return _checked(reply)

    async def kernel_shutdown(self, kernel: str, *, keep: bool = False, timeout: float = 30.0) -> KernelShutdownReply:
        """Stop the kernel (politely, then by force); its connection file is removed.

        With *keep* the process is killed at once and the kernel stays listed as dead, restartable in place.
        """
        content = KernelShutdownRequest(kernel=kernel, keep=keep)
        return await self.call(contract.KERNEL_SHUTDOWN, content, timeout=timeout)

    async def kernel_lease(self, kernel: str, action: str = "renew", lease: float | None = None) -> KernelLeaseReply:
        """Renew the kernel's lease (for *lease* seconds, default the one it has), or ``detach`` it for good."""
        content = KernelLeaseRequest(kernel=kernel, action=cast(Literal["renew", "detach"], action), lease=lease)
        return await self.call(contract.KERNEL_LEASE, content)

    async def spares(self, env: str, count: int) -> SparesReply:
        """Keep *count* spare kernels ready in *env* on this host (the host caps it; remembered)."""
        return await self.call(contract.SPARES, SparesRequest(env=env, count=count))


def checked_kernel_id(value: object) -> str:
    """*value* if it is a kernel id as ssd makes them (a canonical UUID); else refuse it with a clear error."""
    if isinstance(value, str):
        try:
            if str(uuid.UUID(value)) == value:
                return value
        except ValueError:
            pass
    raise SSDError(
        f"the server sent an invalid kernel id {str(value)[:80]!r} (a kernel id is a UUID)", code=ErrorCode.BAD_REPLY
    )


KernelReply = TypeVar("KernelReply", KernelStartReply, KernelInfoReply, KernelRestartReply)


def _checked(reply: KernelReply) -> KernelReply:
    """A reply about one kernel, its id checked."""
    checked_kernel_id(reply.kernel.kernel_id)
    return reply


def write_connection_file(path: str | Path, info: dict[str, Any]) -> Path:
    """Write a classic connection file, 0600, replacing any file there (atomically)."""
    target = Path(path).expanduser()
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return write_atomic(target, json.dumps(info, indent=1) + "\n")

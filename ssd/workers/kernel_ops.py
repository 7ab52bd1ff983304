"""The kernel service's requests on kernels that exist: list, info, interrupt, restart, shut down, lease;
and the user's number of spares. ``kernel_start`` is in ``ssd.workers.kernel``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import msgspec

from ssd.config import KernelsConfig
from ssd.envs import EnvDiscovery, find_env
from ssd.errors import ErrorCode, SSDError
from ssd.kernels.lease import Lease
from ssd.kernels.managed import ManagedKernel
from ssd.kernels.placement import placed
from ssd.kernels.relayhost import RelayHost
from ssd.messages import (
    KernelInfoRequest,
    KernelInterruptRequest,
    KernelLeaseRequest,
    KernelListRequest,
    KernelRestartRequest,
    KernelShutdownRequest,
    SparesRequest,
)
from ssd.replies import (
    KernelDescription,
    KernelInfoReply,
    KernelInterruptReply,
    KernelLeaseReply,
    KernelListReply,
    KernelRestartReply,
    KernelShutdownReply,
    SparesReply,
)
from ssd.workers import wire
from ssd.workers.spares import SpareKeeper

log = logging.getLogger(__name__)

RELAY_SETTLE = 10.0  # seconds a restart waits for the relay to pass the new process's output on


class KernelWorker(Protocol):
    """What these handlers need of the kernel worker (ssd.workers.kernel.KernelWorker)."""

    config: KernelsConfig
    discovery: EnvDiscovery
    kernels: dict[str, ManagedKernel]
    spares: SpareKeeper
    relays: RelayHost | None

    def get(self, kernel_id: str) -> ManagedKernel:
        """One of the user's kernels, or kernel_not_found."""

    def describe(self, kernel: ManagedKernel) -> KernelDescription:
        """A kernel as kernel_list shows it."""

    def connection(self, kernel: ManagedKernel) -> dict[str, Any]:
        """What a client connects to."""

    def remember(self, kernel: ManagedKernel) -> None:
        """Send a kernel's changed record to the broker."""


__all__ = [
    "kernel_info",
    "kernel_interrupt",
    "kernel_lease",
    "kernel_list",
    "kernel_restart",
    "kernel_shutdown",
    "spares",
]


async def kernel_list(worker: KernelWorker, content: KernelListRequest, request: wire.Request) -> KernelListReply:
    """The user's own kernels, or their spares alone (never both: frontends list kernels, not spares)."""
    kernels = worker.spares.kernels if content.spares else worker.kernels
    return KernelListReply(kernels=[worker.describe(k) for k in kernels.values()])


async def kernel_info(worker: KernelWorker, content: KernelInfoRequest, request: wire.Request) -> KernelInfoReply:
    """One kernel with its connection info (attach after a lost connection)."""
    kernel = worker.get(content.kernel)
    return KernelInfoReply(
        kernel=worker.describe(kernel),
        connection=worker.connection(kernel),
        connection_file=kernel.record.connection_file,
        kernel_info=kernel.summary,
    )


async def kernel_interrupt(
    worker: KernelWorker, content: KernelInterruptRequest, request: wire.Request
) -> KernelInterruptReply:
    """Interrupt by SIGINT to the process group, or by interrupt_request on the control channel."""
    kernel = worker.get(content.kernel)
    mode = content.mode or kernel.record.interrupt_mode
    if mode == "signal":
        kernel.interrupt_by_signal()
    else:
        try:
            await kernel.link.request("control", "interrupt_request", {}, timeout=worker.config.shutdown_grace)
        except Exception as exc:
            raise SSDError(
                f"the kernel did not answer interrupt_request: {exc}", code=ErrorCode.KERNEL_SILENT
            ) from None
    return KernelInterruptReply(mode="signal" if mode == "signal" else "message")


async def kernel_restart(
    worker: KernelWorker, content: KernelRestartRequest, request: wire.Request
) -> KernelRestartReply:
    """A new process with the same id, ports and key."""
    kernel = worker.get(content.kernel)
    if kernel.state not in ("ready", "dead"):
        raise SSDError(f"the kernel is {kernel.state}; try again when it is ready", code=ErrorCode.KERNEL_BUSY)
    timing = await kernel.restart()
    await _relay_passes_output(worker, kernel)
    return KernelRestartReply(kernel=worker.describe(kernel), kernel_info=kernel.summary, timing=timing)


async def _relay_passes_output(worker: KernelWorker, kernel: ManagedKernel) -> None:
    """Answer a restart only once the relay passes the new process's output on (its first cell's output
    would be lost to clients that stayed connected while the relay's subscription reached the new process)."""
    if worker.relays is None or not placed(kernel.record) or kernel.state != "ready":
        return

    def ask() -> Any:
        return kernel.link.request("shell", "kernel_info_request", {}, timeout=1.0)

    if not await worker.relays.iopub_flowing(kernel.record, ask, timeout=RELAY_SETTLE):
        log.warning("kernel %s: no output through its relay %g s after the restart", kernel.kernel_id, RELAY_SETTLE)


async def kernel_shutdown(
    worker: KernelWorker, content: KernelShutdownRequest, request: wire.Request
) -> KernelShutdownReply:
    """Polite, then forced after the grace period; the connection file is removed."""
    kernel = worker.get(content.kernel)
    if kernel.state in ("stopping", "gone") or (content.keep and kernel.state in ("starting", "restarting")):
        raise SSDError(f"the kernel is {kernel.state}; try again in a moment", code=ErrorCode.KERNEL_BUSY)
    await (kernel.kill_keeping() if content.keep else kernel.shutdown())
    return KernelShutdownReply(kernel_id=content.kernel, exit_code=kernel.exit_code())


async def kernel_lease(worker: KernelWorker, content: KernelLeaseRequest, request: wire.Request) -> KernelLeaseReply:
    """Renew a kernel's lease (its frontend lives), or detach it: it then runs until it is stopped."""
    kernel = worker.get(content.kernel)
    seconds = None if content.action == "detach" else content.lease or kernel.record.lease
    if content.action == "renew" and seconds is None:
        raise SSDError("this kernel holds no lease; say for how long to lease it", code=ErrorCode.BAD_REQUEST)
    if seconds != kernel.record.lease:  # the length is remembered (re-adoption); a renewal alone is not
        kernel.record = msgspec.structs.replace(kernel.record, lease=seconds)
        worker.remember(kernel)
    kernel.lease = Lease(seconds) if seconds is not None else None
    return KernelLeaseReply(kernel_id=content.kernel, lease=seconds)


async def spares(worker: KernelWorker, content: SparesRequest, request: wire.Request) -> SparesReply:
    """Set the user's number of spares for an environment on this host (remembered; capped by the host)."""
    env = find_env(await asyncio.to_thread(worker.discovery.list), content.env)
    kept = worker.spares.resize(env, content.count)
    return SparesReply(env=env.prefix, count=kept, host_cap=worker.config.spares)

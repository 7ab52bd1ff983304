"""Starting a kernel on the host for SSDProvisioner: ``kernel_start`` with the options an older host may not
know, in the notebook's folder where the host has it; a kernel in a Slurm job waits in Slurm's queue
(``ssd.provisioner.slurmqueue``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ssd.client import AsyncClient
from ssd.client.kernels import START_TIMEOUT
from ssd.errors import ErrorCode, RemoteError
from ssd.provisioner.slurmqueue import QueueWait
from ssd.replies import KernelDescription, KernelStartReply

__all__ = ["StartRequest", "Starter"]


@dataclass(frozen=True)
class StartRequest:
    """What one start asks of the host (from the kernelspec's config and Jupyter's launch arguments)."""

    host: str
    env: str
    kind: str
    cwd: str  # the spec's fixed folder; "" = the notebook's folder, else the home
    notebook_dir: str
    label: str
    name: str
    lease: float
    env_vars: dict[str, str] = field(default_factory=dict)
    slurm: dict[str, Any] | None = None  # None: on the host itself
    queue_timeout: float = 0.0  # seconds a job may wait in Slurm's queue (0: no limit)


class Starter:
    """One start (SSDProvisioner.launch_kernel's): it keeps the kernel of a start still queued in Slurm, so
    that a shutdown meanwhile cancels its job."""

    def __init__(self, request: StartRequest, log: logging.Logger | logging.LoggerAdapter[Any]) -> None:
        self.request = request
        self.log = log
        self.queue = QueueWait(request.host, request.queue_timeout, log)

    async def start(self, client: AsyncClient) -> tuple[KernelDescription, dict[str, Any]]:
        """``kernel_start`` (called by SSDProvisioner in its connection to the host); the kernel and its
        connection info as this client reaches it."""
        request = self.request
        options: dict[str, Any] = {"cwd": request.cwd or request.notebook_dir or None, "lease": request.lease or None}
        options["label"] = request.label
        while True:
            try:
                reply = await self._start_with(client, options)
                break
            except RemoteError as exc:
                dropped = self._fallback(exc, options)
                if dropped is None:
                    raise
                options[dropped] = None
        return reply.kernel, client.connection_info(reply.connection)

    def _fallback(self, exc: RemoteError, options: dict[str, Any]) -> str | None:
        """The option to start again without: a notebook folder the host does not have, or what an older ssd
        does not know (then a warning); None if there is none."""
        request = self.request
        if exc.code == ErrorCode.CWD_REFUSED and not request.cwd and options["cwd"]:
            self.log.info("ssd-provisioner: %s; the kernel starts in the home on %s", exc.message, request.host)
            return "cwd"
        if exc.code != ErrorCode.BAD_REQUEST:
            return None
        if options["label"] and "label" in exc.message:
            return "label"
        if options["lease"] and "lease" in exc.message:
            self.log.warning(
                "ssd-provisioner: %s is an older ssd without leases: kernels outlive Jupyter", request.host
            )
            return "lease"
        return None

    async def _start_with(self, client: AsyncClient, options: dict[str, Any]) -> KernelStartReply:
        request = self.request

        async def start(token: str = "", timeout: float = START_TIMEOUT) -> KernelStartReply:
            return await client.kernel_start(
                request.env,
                request.kind,
                cwd=options["cwd"],
                env_vars=request.env_vars,
                name=request.name,
                lease=options["lease"],
                label=options["label"] or "",
                placement="local" if request.slurm is None else "slurm",
                slurm=request.slurm,
                start_token=token,
                timeout=timeout,
            )

        if request.slurm is None:
            return await start()
        return await self.queue.run(client, start)

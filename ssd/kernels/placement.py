"""Where a kernel runs: the kernel service's one seam between a request and the kind of kernel it gets.

``local`` (always offered): a process of the user on this host (``ManagedKernel``). ``slurm`` (with
``[slurm] enabled``): a Slurm job of the user (``SlurmKernel``), its resources checked against the host's
limits before anything is submitted. The worker asks ``Placements`` for the placement of a request
(``prepare`` then ``kernel``) and for the kernel of a record it adopts; the broker asks ``offered``,
``placement_txt`` and ``slurm_offer`` what to tell clients.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import msgspec
import zmq.asyncio

from ssd.errors import ErrorCode, SSDError
from ssd.kernels import sockdir
from ssd.kernels.managed import KernelHooks, ManagedKernel
from ssd.kernels.record import KernelRecord, SlurmJob
from ssd.kernels.slurm.commands import SlurmCommands
from ssd.kernels.slurm.errors import SlurmUnavailable
from ssd.kernels.slurm.kernel import Placed, SlurmKernel
from ssd.kernels.slurm.limits import SlurmConfig, SlurmRequest, resolve
from ssd.kernels.slurm.poller import JobPoller
from ssd.kernels.transport import CHANNEL_PORTS, ipc_paths
from ssd.messages import SlurmOptions
from ssd.replies import SlurmOffer

__all__ = ["LOCAL", "SLURM", "Placements", "job_fields", "offered", "placed", "placement_txt", "slurm_offer"]

LOCAL = "local"
SLURM = "slurm"
_TXT_PARTITIONS = 120  # bytes of the part= TXT string at most (a TXT record stays small)


def offered(config: SlurmConfig) -> tuple[str, ...]:
    """The placements this host offers."""
    return (LOCAL, SLURM) if config.enabled else (LOCAL,)


def slurm_offer(config: SlurmConfig) -> SlurmOffer | None:
    """server_info's defaults and limits of kernels in jobs (for a client's form); None without Slurm."""
    if not config.enabled:
        return None
    fields = ("default_partition", "default_time", "default_cpus", "default_mem")
    limits = ("max_time", "max_cpus", "max_mem", "max_gpus")
    return SlurmOffer(**{key: getattr(config, key) for key in (*fields, *limits)})


def placement_txt(config: SlurmConfig) -> dict[str, str]:
    """Discovery's TXT strings: ``pl`` (placements) and, with Slurm, ``part`` (its partitions; * = any)."""
    txt = {"pl": ",".join(offered(config))}
    if config.enabled:
        parts = ",".join(config.partitions) or "*"
        txt["part"] = parts if len(parts) <= _TXT_PARTITIONS else parts[:_TXT_PARTITIONS].rsplit(",", 1)[0] + ",..."
    return txt


def placed(record: KernelRecord) -> bool:
    """Whether the kernel's own endpoint is known (a job's is not until its relay started)."""
    return record.connection.get("transport") != "inproc"


def job_fields(kernel: ManagedKernel) -> dict[str, Any]:
    """What kernel_list shows of a kernel's placement (job id, node, partition, seconds left)."""
    if not isinstance(kernel, SlurmKernel):
        return {}
    state = kernel.job_state
    return {
        "placement": SLURM,
        "job_id": kernel.job.job_id or None,
        "node": state.node if state is not None else None,
        "partition": (state.partition if state is not None else None) or kernel.job.partition,
        "time_left": kernel.time_left(),
    }


class Placements:
    """The placements of one kernel worker (its user's), from the host's ``[slurm]`` section."""

    def __init__(self, config: SlurmConfig, home: str, *, relayed: bool, on_placed: Placed) -> None:
        self.config = config
        self.on_placed = on_placed  # the worker's: open the login node's relay once a job's relay is known
        self.home = home
        self.relayed = relayed  # kernels.transport = curve: a job's kernel is reached through relays only
        self._commands: SlurmCommands | None = None
        self._poller: JobPoller | None = None

    def commands(self) -> SlurmCommands:
        """sbatch, squeue, scancel (found once, on first use)."""
        if self._commands is None:
            self._commands = SlurmCommands.from_config(self.config)
        return self._commands

    def check(self, placement: str, options: SlurmOptions | None) -> None:
        """Refuse a placement this host does not offer, and Slurm options without Slurm, before any work."""
        if placement == LOCAL and options is not None:
            raise SSDError("Slurm options (partition, time, ...) need placement slurm", code=ErrorCode.BAD_REQUEST)
        if placement == SLURM and not self.config.enabled:
            raise SlurmUnavailable("this host does not offer kernels in Slurm jobs ([slurm] enabled = false)")
        if placement == SLURM and not self.relayed:
            raise SlurmUnavailable("kernels in Slurm jobs need kernels.transport = curve on this host")

    def prepare(self, record: KernelRecord, placement: str, options: SlurmOptions | None) -> KernelRecord:
        """The record of a new kernel for *placement*: with Slurm, the checked resources and the job's folder."""
        if placement != SLURM:
            return record
        resources = resolve(SlurmRequest(**msgspec.structs.asdict(options or SlurmOptions())), self.config)
        self.commands()  # a missing sbatch is named now, not after the kernel was announced
        folder = Path(os.path.expanduser(self.config.job_folder.replace("~", self.home, 1))) / record.kernel_id
        job = SlurmJob(
            folder=str(folder),
            partition=resources.partition,
            time_seconds=resources.time_seconds,
            cpus=resources.cpus,
            mem_mib=resources.mem_mib,
            gpus=resources.gpus,
        )
        _drop_local_sockets(record.connection)
        # Until the job's relay is up the worker's link waits on inproc names no one binds.
        pending = {key: record.connection[key] for key in ("key", "signature_scheme", "kernel_name")}
        pending |= {"transport": "inproc", "ip": f"ssd-pending-{record.kernel_id}"}
        pending |= {key: n for n, key in enumerate(CHANNEL_PORTS, 1)}
        return msgspec.structs.replace(record, placement=SLURM, job=job, connection=pending)

    def kernel(self, ctx: zmq.asyncio.Context, record: KernelRecord, hooks: KernelHooks) -> ManagedKernel:
        """The kernel object for *record* (a new one, or one to adopt)."""
        if record.placement != SLURM:
            return ManagedKernel(ctx, record, hooks)
        if self._poller is None:
            self._poller = JobPoller(self.commands())
        return SlurmKernel(ctx, record, hooks, self.commands(), self.login_address(), self.on_placed, self._poller)

    def login_address(self) -> str:
        """This host as the nodes reach it: slurm.login_address, else its name resolved."""
        return self.config.login_address or socket.gethostbyname(socket.gethostname())


def _drop_local_sockets(info: dict[str, Any]) -> None:
    """The private socket folder made for a local kernel, unused by a job's (it lives on the node)."""
    paths = ipc_paths(info)
    if paths:
        sockdir.remove_sockets(paths)
        folder = Path(paths[0]).parent
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()

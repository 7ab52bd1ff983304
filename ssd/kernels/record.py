"""What the daemon remembers of a kernel, so that a restarted worker re-adopts it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec

from ssd.errors import ErrorCode, SSDError

__all__ = ["KernelRecord", "RecordSaves", "SlurmJob"]

SAVE_TIMEOUT = 10.0  # seconds the broker has to confirm a record before the action it guards is refused


class SlurmJob(msgspec.Struct, frozen=True, kw_only=True):
    """A kernel's Slurm job: its id (0 until submitted), folder on the shared filesystem, resources."""

    job_id: int = 0  # 0: being submitted (sbatch may have run: the job is then found by its name, see adopt)
    folder: str  # 0700: job.json (what the job runs), endpoint.json (where its relay listens), logs
    partition: str | None = None
    time_seconds: int = 0
    cpus: int = 1
    mem_mib: int | None = None
    gpus: int = 0


class KernelRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One kernel as written to the state store (through the broker) and read back on adoption."""

    kernel_id: str
    user: str
    name: str
    env: str  # prefix
    env_name: str
    kind: str  # spyder | ipykernel
    pid: int
    start_ticks: int  # /proc/PID/stat field 22: tells a reused pid from our kernel
    started: float  # epoch seconds of the first start
    connection: dict[str, Any]  # the classic connection info (the key is the user's secret)
    connection_file: str
    log_file: str
    cwd: str
    argv: list[str]
    environ: dict[str, str]  # the kernel's whole environment: clean, activated, allow-listed extras
    umask: int = 0o022
    memory_limit_mb: int = 0
    interrupt_mode: str = "signal"
    auto_restart: bool = False
    restarts: int = 0
    # Seconds one renewal of the frontend's lease holds the kernel; None: no lease (ssd-ctl start, detached).
    lease: float | None = None
    # The CURVE relay (transport curve): its bind address, ports and keypair, kept across worker restarts.
    relay: dict[str, Any] | None = None
    label: str = ""  # the frontend's: a notebook's path, "spyder"
    start_token: str = ""  # the client's name for the start that made it (KernelStartRequest.start_token)
    placement: str = "local"  # local | slurm (ssd.kernels.placement)
    job: SlurmJob | None = None  # the Slurm job a kernel of placement slurm runs in
    # A spare: started ahead for the next matching kernel_start, never ran user code (ssd.kernels.spares).
    spare: bool = False


class RecordSaves:
    """Records the broker confirmed it stored (``wire.SAVED``), for actions that must not outrun their record."""

    def __init__(self, send: Callable[[str, KernelRecord], None]) -> None:
        self._send = send
        self._waiting: dict[str, asyncio.Future[None]] = {}

    async def save(self, record: KernelRecord) -> None:
        """Send *record* and return once the broker's state store holds it (the kernel worker's SlurmKernel,
        before sbatch); an error if the broker does not confirm it within SAVE_TIMEOUT."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[record.kernel_id] = waiter
        try:
            self._send(record.kernel_id, record)
            await asyncio.wait_for(waiter, SAVE_TIMEOUT)
        except TimeoutError:
            raise SSDError(
                f"the daemon did not confirm kernel {record.kernel_id}'s record within {SAVE_TIMEOUT:g} s",
                code=ErrorCode.KERNEL_START_FAILED,
            ) from None
        finally:
            self._waiting.pop(record.kernel_id, None)

    def saved(self, kernel_id: str) -> None:
        """The broker stored the latest record of *kernel_id* (its ``SAVED``, from the worker's receive loop)."""
        waiter = self._waiting.get(kernel_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

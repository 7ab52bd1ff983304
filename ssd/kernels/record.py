"""What the daemon remembers of a kernel, so that a restarted worker re-adopts it."""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["KernelRecord", "SlurmJob"]


class SlurmJob(msgspec.Struct, frozen=True, kw_only=True):
    """A kernel's Slurm job: its id (0 until submitted), folder on the shared filesystem, resources."""

    job_id: int = 0
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
    placement: str = "local"  # local | slurm (ssd.kernels.placement)
    job: SlurmJob | None = None  # the Slurm job a kernel of placement slurm runs in
    # A spare: started ahead for the next matching kernel_start, never ran user code (ssd.kernels.spares).
    spare: bool = False

"""What the daemon remembers of a kernel, so that a restarted worker re-adopts it."""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["KernelRecord"]


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
    # A spare: started ahead for the next matching kernel_start, never ran user code (ssd.kernels.spares).
    spare: bool = False

"""Facts about this host that the daemon reports: OS, architecture, CPUs, memory, load."""

from __future__ import annotations

import os
import platform
import socket
from typing import Any

import psutil

__all__ = ["host_name", "host_status"]


def host_name() -> str:
    """Return this machine's short host name."""
    return socket.gethostname().split(".")[0] or "localhost"


def host_status() -> dict[str, Any]:
    """Return the current OS, architecture, CPU count, memory and load averages."""
    memory = psutil.virtual_memory()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "os": platform.system(),
        "os_release": platform.release(),
        "arch": platform.machine(),
        "cpus": os.cpu_count() or 1,
        "memory_total": memory.total,
        "memory_available": memory.available,
        "load": [round(value, 2) for value in load],
    }

"""Which TCP ports a process listens on, read from /proc as root reads it (for the isolation tests)."""

from __future__ import annotations

import os

__all__ = ["tcp_listeners"]

_LISTEN = "0A"


def tcp_listeners(pid: int) -> set[int]:
    """The ports of the TCP sockets *pid* listens on: its socket inodes, looked up in its own network
    namespace's /proc/PID/net/tcp and tcp6."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:  # closed while we looked (a busy worker opens and closes sockets)
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[3] == _LISTEN and fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports

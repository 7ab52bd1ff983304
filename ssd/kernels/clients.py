"""How many clients a plain-transport kernel has: established TCP connections to its shell port.

Read from ``/proc/net/tcp`` and ``tcp6`` of this network namespace. The
kernel itself connects to its own shell port (ipykernel does), so connections
whose other end is one of the kernel's own sockets are not clients. The relay
(encrypted transport) counts its own clients instead.
"""

from __future__ import annotations

import os

__all__ = ["count_clients"]

_ESTABLISHED = "01"


def _connections() -> list[tuple[int, int, int]]:
    """(local port, remote port, socket inode) of every established TCP connection."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines, None)
                for line in lines:
                    fields = line.split()
                    if len(fields) > 9 and fields[3] == _ESTABLISHED:
                        local = int(fields[1].rsplit(":", 1)[1], 16)
                        remote = int(fields[2].rsplit(":", 1)[1], 16)
                        found.append((local, remote, int(fields[9])))
        except OSError:
            continue
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except OSError:
        pass
    return inodes


def count_clients(shell_port: int, kernel_pid: int) -> int:
    """Established connections to *shell_port* from anything but the kernel itself."""
    connections = _connections()
    own = _socket_inodes(kernel_pid)
    own_ports = {local for local, _, inode in connections if inode in own and local != shell_port}
    return sum(1 for local, remote, _ in connections if local == shell_port and remote not in own_ports)

"""Who owns the other end of a local TCP connection: the uid the kernel lists for it in /proc/net/tcp."""

from __future__ import annotations

import contextlib
import socket
import sys

__all__ = ["local_peer_uid", "owner_in_table", "proc_address"]

_UID_COLUMN = 7


def proc_address(host: str, port: int) -> str:
    """*host*:*port* as /proc/net/tcp{,6} writes it: each 32-bit word of the address in host order, in hex."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    raw = socket.inet_pton(family, host.split("%", 1)[0])
    words = "".join(f"{int.from_bytes(raw[n : n + 4], sys.byteorder):08X}" for n in range(0, len(raw), 4))
    return f"{words}:{port:04X}"


def owner_in_table(table: str, local: str, remote: str) -> int | None:
    """The uid of the socket listed in *table* (/proc/net/tcp text) as *local* connected to *remote*."""
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > _UID_COLUMN and fields[1] == local and fields[2] == remote:
            return int(fields[_UID_COLUMN])
    return None


def local_peer_uid(sock: socket.socket) -> int | None:
    """The uid owning the other end of connected TCP *sock*, when that end is on this host; else None."""
    try:
        ours, theirs = sock.getsockname(), sock.getpeername()
    except OSError:
        return None
    table = "/proc/net/tcp6" if sock.family == socket.AF_INET6 else "/proc/net/tcp"
    with contextlib.suppress(OSError), open(table) as fh:
        return owner_in_table(fh.read(), proc_address(theirs[0], theirs[1]), proc_address(ours[0], ours[1]))
    return None

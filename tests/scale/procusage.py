"""What /proc says of a process: threads, descriptors (and of which kind), resident memory; its children;
the descriptor limits a process has and the installed systemd unit gives."""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from support.eventually import eventually

from ssd.paths import server_paths
from ssd.service.unit import system_unit

__all__ = ["MIB", "SYSTEMD_DEFAULT_NOFILE", "Usage", "children_of", "edge_of", "soft_nofile", "unit_nofile", "usage"]

MIB = 1024 * 1024
SYSTEMD_DEFAULT_NOFILE = 1024  # the soft limit a unit without LimitNOFILE= gets


@dataclass(frozen=True)
class Usage:
    """One process as /proc shows it: threads, open descriptors (and of which kind), resident memory."""

    threads: int
    fds: int
    rss: int  # bytes
    fd_kinds: dict[str, int]


def _fd_kind(target: str) -> str:
    """socket, eventfd (one per libzmq socket: its mailbox), eventpoll (one per libzmq I/O thread), pipe, file."""
    if target.startswith("socket:"):
        return "socket"
    if target.startswith("anon_inode:"):
        return target.removeprefix("anon_inode:").strip("[]")
    if target.startswith("pipe:"):
        return "pipe"
    return "file"


def usage(pid: int) -> Usage:
    """Threads and VmRSS from /proc/PID/status, descriptors from /proc/PID/fd."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    kinds: Counter[str] = Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            kinds[_fd_kind(os.readlink(f"/proc/{pid}/fd/{fd}"))] += 1
        except FileNotFoundError:  # closed while we looked
            continue
    rss = int(fields["VmRSS"].split()[0]) * 1024
    return Usage(int(fields["Threads"]), sum(kinds.values()), rss, dict(kinds))


def soft_nofile(pid: int) -> int:
    """The soft RLIMIT_NOFILE of *pid*, from /proc/PID/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError(f"no 'Max open files' in /proc/{pid}/limits")


def unit_nofile() -> tuple[int, str]:
    """The soft descriptor limit the installed system unit gives the daemon (and so its workers), and why."""
    text = system_unit(Path(sys.executable), server_paths("system"))
    found = re.search(r"^LimitNOFILE=(\d+)(?::(\d+))?$", text, re.MULTILINE)
    if found is None:
        return SYSTEMD_DEFAULT_NOFILE, "no LimitNOFILE= in the unit: systemd's default soft limit"
    return int(found.group(1)), f"LimitNOFILE={found.group(0).split('=', 1)[1]} in the unit (soft and hard)"


def children_of(parent: int) -> dict[int, tuple[int, str]]:
    """The child processes of *parent*: pid to (uid, command line), from /proc."""
    found: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat[stat.rfind(")") + 2 :].split()[1]) == parent:
                found[int(entry.name)] = (entry.stat().st_uid, (entry / "cmdline").read_bytes().decode())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def edge_of(broker: int) -> int:
    """The edge process (pre-login containment) of a broker, once the broker has started it."""

    def found() -> int | None:
        edges = [pid for pid, (_, cmd) in children_of(broker).items() if "ssd.edge" in cmd]
        return edges[0] if len(edges) == 1 else None

    return eventually(found, "the broker's edge process")

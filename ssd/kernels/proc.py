"""Kernel processes: who they are (pid plus start time), whether they live, how to signal them.

A kernel runs in its own session, so it outlives its worker; a restarted
worker finds it again by pid *and* start time, so that a pid the system gave
to another process since is never mistaken for the kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

__all__ = ["ExitWatch", "is_alive", "reap", "signal_group", "start_ticks", "wait_gone"]


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            raw = stat.read().decode(errors="replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    return raw[raw.rfind(")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or None."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def is_alive(pid: int, ticks: int) -> bool:
    """True when *pid* is the process that started at *ticks* and has not exited (zombies count as gone)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X") and int(fields[19]) == ticks


def signal_group(pid: int, signum: int) -> bool:
    """Signal the kernel's process group (it leads its own session); False if it is gone."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)
    return True


async def wait_gone(pid: int, ticks: int, timeout: float) -> bool:
    """Wait up to *timeout* seconds for the process to exit; True if it did."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while is_alive(pid, ticks):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.02)
    return True


class ExitWatch:
    """Calls back in the event loop the moment a process exits, child or not (a pidfd)."""

    def __init__(self, pid: int, on_exit: Callable[[], None]) -> None:
        self.pid = pid
        self._loop = asyncio.get_running_loop()
        self._on_exit = on_exit
        self._fd: int | None = os.pidfd_open(pid)
        self._loop.add_reader(self._fd, self._fired)

    def _fired(self) -> None:
        self.close()
        self._on_exit()

    def close(self) -> None:
        """Stop watching (idempotent)."""
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None


def reap(pid: int) -> int | None:
    """Collect a child's exit status without blocking; None if it is not our child or still runs."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    if done == 0:
        return None
    return os.waitstatus_to_exitcode(status)

"""One kernel under a worker's care: start, watch, interrupt, restart, shut down.

The worker owns a ``ManagedKernel`` per kernel. Every change of state goes
out through two callbacks: ``on_state`` (a lifecycle event, no secrets) and
``on_record`` (what the state store must remember, or None once it is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import zmq.asyncio

from ssd.errors import ErrorCode, SSDError
from ssd.kernels import launch, proc, sockdir
from ssd.kernels.lease import Lease
from ssd.kernels.link import KernelLink, KernelSilent, kernel_info_summary
from ssd.kernels.record import KernelRecord
from ssd.kernels.transport import ipc_paths

__all__ = ["KernelHooks", "ManagedKernel"]

_HOUR = 3600.0
# What follows this in a start error is the kernel's own output: the requester's reply only, never an event.
_OUTPUT = "; its last output:\n"
# A kernel that died stays listed (as dead, restartable with the same id and ports) this long.
DEAD_LINGER = 60.0
READY_RETRY = 1.0  # seconds between kernel_info requests to a starting kernel


class KernelHooks(msgspec.Struct, frozen=True):
    """Where a managed kernel reports to, and the limits it keeps."""

    on_state: Callable[[ManagedKernel, str, dict[str, Any]], None]
    on_record: Callable[[str, KernelRecord | None], None]
    start_timeout: float
    shutdown_grace: float
    max_restarts: int
    # Send a record and wait until the broker stored it (None: on_record, unconfirmed).
    save: Callable[[KernelRecord], Awaitable[None]] | None = None


class ManagedKernel:
    """A kernel process, the worker's link to it, and its lifecycle state."""

    def __init__(self, ctx: zmq.asyncio.Context, record: KernelRecord, hooks: KernelHooks) -> None:
        self.ctx = ctx
        self.record = record
        self.hooks = hooks
        self.state = "starting"
        self.process: subprocess.Popen[bytes] | None = None  # None when adopted (not our child)
        self.link = KernelLink(ctx, record.connection)
        self.summary: dict[str, Any] = {}
        self._watch: proc.ExitWatch | None = None
        self._exited = asyncio.Event()
        self._restarts: deque[float] = deque()
        self._dying: asyncio.Task[None] | None = None
        self._linger: asyncio.TimerHandle | None = None
        # A fresh lease also for an adopted kernel: its frontend gets time to renew after a restart of ssd.
        self.lease = Lease(record.lease) if record.lease else None

    @property
    def kernel_id(self) -> str:
        """The kernel's id (stable across restarts)."""
        return self.record.kernel_id

    # -- starting -----------------------------------------------------------------------

    async def start(self) -> dict[str, float]:
        """Spawn the process and wait for its kernel_info reply; return the timings."""
        began = time.monotonic()
        self._spawn()
        spawned = time.monotonic()
        self.hooks.on_state(self, "starting", {})
        await self._wait_ready()
        self.state = "ready"
        self.link.start_watching()
        self.hooks.on_state(self, "ready", {})
        return {"spawn": spawned - began, "ready": time.monotonic() - began}

    def _spawn(self) -> None:
        # The kernel reads its ports and key from this file: after a restart they must be the same,
        # even if something removed or changed the file meanwhile.
        self._check_socket_dir()
        launch.write_kernel_file(self.record.connection_file, self.record.connection)
        self.process = launch.spawn(self.record)
        ticks = proc.start_ticks(self.process.pid) or 0
        self.record = msgspec.structs.replace(self.record, pid=self.process.pid, start_ticks=ticks)
        self._exited = asyncio.Event()
        self._watch = proc.ExitWatch(self.process.pid, self._on_exit)
        self.hooks.on_record(self.kernel_id, self.record)

    async def _wait_ready(self) -> None:
        """Ask for kernel_info until it answers; fail with the kernel's last words if it exits first."""
        asking = asyncio.create_task(self._ask_kernel_info())
        exited = asyncio.create_task(self._exited.wait())
        try:
            await asyncio.wait({asking, exited}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
        if asking.done() and asking.exception() is None:
            self.summary = kernel_info_summary(asking.result())
            if self.link.execution_state == "starting":
                self.link.execution_state = "idle"  # it answered: iopub may not have said so yet
            return
        asking.cancel()
        with contextlib.suppress(asyncio.CancelledError, KernelSilent):
            await asking
        tail = launch.log_tail(self.record.log_file)
        if self._exited.is_set():
            reason = f"the kernel exited during start (code {self.exit_code()})"
            if self.record.memory_limit_mb:
                reason += (
                    f"; this host limits kernels to {self.record.memory_limit_mb} MiB of address space "
                    "(kernels.memory_limit), and a Python kernel needs several hundred MiB just to start"
                )
        else:
            reason = f"the kernel did not answer kernel_info within {self.hooks.start_timeout:g} s"
            await self._stop_process()
        raise SSDError(reason + (f"{_OUTPUT}{tail}" if tail else ""), code=ErrorCode.KERNEL_START_FAILED)

    async def _ask_kernel_info(self) -> dict[str, Any]:
        """kernel_info, asked again every READY_RETRY seconds until the kernel answers (KernelSilent after
        start_timeout): a starting kernel may leave a request unanswered (seen under a burst of starts: the
        kernel idle and answering a new request at once, the start waiting out its timeout), which is why
        jupyter_client's wait_for_ready asks again every second too."""
        deadline = time.monotonic() + self.hooks.start_timeout
        while True:
            wait = min(READY_RETRY, max(0.0, deadline - time.monotonic()))
            try:
                return await self.link.request("shell", "kernel_info_request", {}, timeout=wait)
            except KernelSilent:
                if time.monotonic() >= deadline:
                    raise

    def _check_socket_dir(self) -> None:
        """An ipc kernel's socket folder must be this user's alone (made again if a cleaner removed it)."""
        paths = ipc_paths(self.record.connection)
        if paths:
            sockdir.check_private_dir(Path(paths[0]).parent)

    # -- adoption -----------------------------------------------------------------------

    def adopt(self) -> bool:
        """Take over a kernel a previous worker started; False if its process is gone (or its sockets are no
        longer in a private folder: the relay would connect whoever sits there to the user's clients)."""
        if not proc.is_alive(self.record.pid, self.record.start_ticks):
            return False
        try:
            self._check_socket_dir()
        except (SSDError, OSError):
            return False
        try:
            self._watch = proc.ExitWatch(self.record.pid, self._on_exit)
        except ProcessLookupError:
            return False
        self.state = "ready"
        self.link.start_watching()
        return True

    # -- death --------------------------------------------------------------------------

    def exit_code(self) -> int | None:
        """The exit code when the kernel was our child; None for an adopted one."""
        if self.process is not None:
            return self.process.poll()
        return proc.reap(self.record.pid)

    def _on_exit(self) -> None:
        self._exited.set()
        if self.state == "ready":  # starting, restarting and stopping wait for the exit themselves
            self.state = "dead"  # at once: a request arriving now must not act on a live kernel
            self._dying = asyncio.create_task(self._died())

    async def _died(self) -> None:
        code = self.exit_code()
        self.state = "dead"
        self.hooks.on_state(self, "dead", {"exit_code": code})
        if self.record.auto_restart and self._may_restart():
            try:
                await self._respawn()
            except SSDError as exc:
                self.hooks.on_state(self, "dead", {"exit_code": None, "reason": _public(exc)})
            else:
                self.hooks.on_state(self, "restarted", {"automatic": True})
                return
        self._linger_dead()

    def _linger_dead(self) -> None:
        """Listed as dead for a while: a client (Jupyter's restart) may bring it back on the same ports."""
        self.state = "dead"
        self._cancel_linger()
        self._linger = asyncio.get_running_loop().call_later(DEAD_LINGER, self.forget)

    def _may_restart(self) -> bool:
        now = time.monotonic()
        while self._restarts and self._restarts[0] < now - _HOUR:
            self._restarts.popleft()
        return len(self._restarts) < self.hooks.max_restarts

    # -- operations ---------------------------------------------------------------------

    def interrupt_by_signal(self) -> None:
        """SIGINT to the kernel's process group, as jupyter_client does."""
        if not proc.signal_group(self.record.pid, signal.SIGINT):
            raise SSDError("the kernel is not running", code=ErrorCode.KERNEL_DEAD)

    async def restart(self) -> dict[str, float]:
        """Same id, ports and key; a new process (also for a kernel that died). Returns the timings."""
        began = time.monotonic()
        was_dead = self.state == "dead"
        self._cancel_linger()
        self.state = "restarting"
        if not was_dead:
            with contextlib.suppress(KernelSilent):
                await self.link.request("control", "shutdown_request", {"restart": True}, timeout=1.0)
        await self._stop_process()
        try:
            await self._respawn()
        except SSDError as exc:
            self.state = "dead"
            self.hooks.on_state(self, "dead", {"exit_code": self.exit_code(), "reason": _public(exc)})
            await self._stop_process()
            self._linger_dead()  # still listed: a later restart (the environment back) or a shutdown ends it
            raise
        self.hooks.on_state(self, "restarted", {"automatic": False})
        return {"ready": time.monotonic() - began}

    async def _respawn(self) -> None:
        self._restarts.append(time.monotonic())
        self.state = "starting"
        self._spawn()
        self.record = msgspec.structs.replace(self.record, restarts=self.record.restarts + 1)
        self.hooks.on_record(self.kernel_id, self.record)
        await self._wait_ready()
        self.state = "ready"

    async def shutdown(self, event: str = "shutdown", reason: str | None = None) -> None:
        """Polite shutdown_request, then SIGTERM, then SIGKILL; files removed, record dropped."""
        self._cancel_linger()
        was_dead, self.state = self.state == "dead", "stopping"
        if not was_dead:
            with contextlib.suppress(KernelSilent):
                await self.link.request("control", "shutdown_request", {"restart": False}, timeout=1.0)
        await self._stop_process()
        # Files first: whoever hears the event may look for them at once.
        self._remove_files()
        extra = {"reason": reason} if reason else {}
        self.hooks.on_state(self, event, {"exit_code": self.exit_code(), **extra})
        self.forget()

    async def kill_keeping(self) -> None:
        """Kill the process now and keep the kernel listed as dead, restartable in place (Jupyter's kill
        before a restart: its clients keep the ports and key)."""
        if self.state == "dead":
            return
        self.state = "stopping"
        proc.signal_group(self.record.pid, signal.SIGKILL)
        await self._stop_process()
        self.hooks.on_state(self, "dead", {"exit_code": self.exit_code(), "reason": "killed by its client"})
        self._linger_dead()

    async def _stop_process(self) -> None:
        """Wait the grace period for the process to go, then force it; reap it if it is ours."""
        pid, ticks = self.record.pid, self.record.start_ticks
        if not await proc.wait_gone(pid, ticks, self.hooks.shutdown_grace):
            proc.signal_group(pid, signal.SIGTERM)
            if not await proc.wait_gone(pid, ticks, 1.0):
                proc.signal_group(pid, signal.SIGKILL)
                await proc.wait_gone(pid, ticks, 5.0)
        if self._watch is not None:
            self._watch.close()
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=1.0)

    def abandon(self) -> None:
        """After a failed start: kill whatever runs of it, then forget it."""
        if self.record.pid and proc.is_alive(self.record.pid, self.record.start_ticks):
            proc.signal_group(self.record.pid, signal.SIGKILL)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5.0)
        self.forget()

    def _cancel_linger(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None

    def forget(self) -> None:
        """Close the link, remove the connection and log files and the ipc sockets, drop the record."""
        self._cancel_linger()
        self.state = "gone" if self.state != "dead" else "dead"
        if self._watch is not None:
            self._watch.close()
        self.link.close()
        self._remove_files()
        self.hooks.on_record(self.kernel_id, None)

    def _remove_files(self) -> None:
        """The connection and log files and the ipc sockets (each may already be gone)."""
        for path in (self.record.connection_file, self.record.log_file):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        sockdir.remove_sockets(ipc_paths(self.record.connection))


def _public(exc: SSDError) -> str:
    """The error without the kernel's output: any subscriber may read events (DESIGN §3)."""
    return exc.message.partition(_OUTPUT)[0]

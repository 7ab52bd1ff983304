"""Start worker processes, restart crashed ones with backoff, stop them all on shutdown.

Each spawn gets a fresh CURVE keypair: the public key is registered with the
broker (so ZAP lets exactly that process in) and the credentials travel to the
child on its stdin pipe, never on the command line or in the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from ssd.isolation import SAFE_CWD, python_module
from ssd.users import Account
from ssd.workers import wire
from ssd.workers.privileges import as_user

__all__ = ["Supervisor", "WorkerSpec", "describe_exit"]

log = logging.getLogger(__name__)

# A worker that ran this long before dying is considered to have been healthy,
# so the next restart is immediate rather than backed off.
_STABLE_AFTER = 30.0
_FIRST_BACKOFF = 0.25
LIMIT_WAIT = 10.0  # seconds a new worker has to lower its own address-space limit


@dataclass(frozen=True)
class WorkerSpec:
    """What to run: a name unique among workers, its service and service options."""

    name: str
    service: str
    options: dict[str, Any] = field(default_factory=dict)
    user: Account | None = None  # per-user services run as this account
    # A hard RLIMIT_AS in bytes (0: none), in place before the worker has its credentials: the worker and
    # everything it starts inherit it, and only root could raise it again.
    address_space: int = 0


@dataclass
class _Child:
    spec: WorkerSpec
    key: str = ""
    process: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None
    restarts: int = 0
    retiring: bool = False


class Supervisor:
    """Keeps one process running per WorkerSpec until told to stop."""

    def __init__(
        self,
        *,
        endpoint: str,
        server_key: bytes,
        heartbeat_interval: float,
        log_level: str,
        backoff_max: float,
        expect: Callable[[str, str, str | None], None],
    ) -> None:
        self._endpoint = endpoint
        self._server_key = server_key.decode()
        self._heartbeat = heartbeat_interval
        self._log_level = log_level
        self._backoff_max = backoff_max
        self._expect = expect
        # The key of each worker process that ended, for the backend to answer what it held (WorkerRouter).
        self.exits: asyncio.Queue[str] = asyncio.Queue()
        self._children: dict[str, _Child] = {}
        self._stopping = False

    @property
    def stopping(self) -> bool:
        """True once stop_all() began (a worker exiting then is not restarted)."""
        return self._stopping

    def stopping_now(self) -> None:
        """From now on a worker that exits is not restarted (shutdown has begun)."""
        self._stopping = True

    def start(self, spec: WorkerSpec) -> None:
        """Begin supervising *spec* (no-op if a worker of that name runs)."""
        if spec.name in self._children:
            return
        child = _Child(spec)
        child.task = asyncio.create_task(self._keep_running(child), name=f"supervise {spec.name}")
        self._children[spec.name] = child

    def running(self, name: str) -> bool:
        """Tell whether a worker of that name is supervised (starting, running or restarting)."""
        return name in self._children

    def supervises(self, pid: int) -> bool:
        """Tell whether *pid* is a worker this supervisor started and has not waited for yet."""
        return any(
            c.process is not None and c.process.pid == pid and c.process.returncode is None
            for c in self._children.values()
        )

    def revive(self, name: str) -> None:
        """A request came for a worker that is being retired: start it again once it has exited."""
        child = self._children.get(name)
        if child is not None and child.retiring:
            child.retiring = False
            log.info("worker %s is wanted again; it restarts when it has exited", name)

    def retire(self, key: str) -> None:
        """Stop the worker holding *key* for good (an idle per-user worker): SIGTERM, no restart."""
        child = next((c for c in self._children.values() if c.key == key), None)
        if child is None:
            return
        child.retiring = True
        if child.process is not None and child.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)

    def kill(self, key: str) -> None:
        """SIGKILL the worker holding *key* (it stopped answering heartbeats)."""
        for child in self._children.values():
            if child.key == key and child.process and child.process.returncode is None:
                log.warning("worker %s stopped answering; killing pid %d", child.spec.name, child.process.pid)
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()

    async def _keep_running(self, child: _Child) -> None:
        delay = _FIRST_BACKOFF
        while not self._stopping:
            started = time.monotonic()
            try:
                code = await self._run_once(child)
            except OSError as exc:
                log.error("cannot start worker %s: %s", child.spec.name, exc)
                code = None
            if self.stopping:
                return
            if child.retiring:
                self._children.pop(child.spec.name, None)
                log.info("worker %s retired", child.spec.name)
                return
            ran = time.monotonic() - started
            delay = _FIRST_BACKOFF if ran > _STABLE_AFTER else min(delay * 2, self._backoff_max)
            child.restarts += 1
            log.warning("worker %s exited (%s); restarting in %.2fs", child.spec.name, describe_exit(code), delay)
            await asyncio.sleep(delay)

    async def _run_once(self, child: _Child) -> int | None:
        public, secret = zmq.curve_keypair()
        child.key = public.decode()
        user = child.spec.user
        self._expect(child.key, child.spec.service, user.name if user else None)
        options = {**child.spec.options, "user": user.name} if user else child.spec.options
        credentials = wire.Credentials(
            endpoint=self._endpoint,
            server_key=self._server_key,
            public_key=child.key,
            secret_key=secret.decode(),
            service=child.spec.service,
            heartbeat_interval=self._heartbeat,
            log_level=self._log_level,
            options=options,
        )
        # A per-user worker: its groups, gid and uid, a clean environment, umask 077,
        # its home as cwd, its own session; never anything of root's. Root's own start in /.
        extra: dict[str, Any] = as_user(user) if user else {"cwd": SAFE_CWD}
        if child.spec.address_space:
            # The worker lowers its own hard limit first thing (lowering needs no privilege, and root may lack
            # CAP_SYS_RESOURCE to do it from outside); glibc reserves 64 MiB of address space per thread
            # arena, so few arenas keep the worker itself within the limit.
            limits = {wire.ADDRESS_SPACE_VARIABLE: str(child.spec.address_space), "MALLOC_ARENA_MAX": "2"}
            extra["env"] = {**extra.get("env", os.environ), **limits}
        process = await asyncio.create_subprocess_exec(
            *python_module("ssd.workers"), stdin=asyncio.subprocess.PIPE, close_fds=True, **extra
        )
        child.process = process
        log.info("started worker %s (service %s, pid %d)", child.spec.name, child.spec.service, process.pid)
        assert process.stdin is not None
        limited = await _address_space_limited(process.pid, child.spec)
        if not limited:  # no credentials for it: it cannot register
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        try:
            if limited:
                process.stdin.write(wire.encode(credentials) + b"\n")
                await process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # it died at once; wait() below reports how
        finally:
            process.stdin.close()
        try:
            return await process.wait()
        finally:
            self.exits.put_nowait(child.key)

    async def stop_all(self, grace: float) -> None:
        """Stop every worker: SIGTERM, SIGKILL what is left after *grace* seconds, reap all."""
        self._stopping = True
        for child in self._children.values():  # no restart may begin from here on
            if child.task is not None:
                child.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await child.task
        running = [c.process for c in self._children.values() if c.process and c.process.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        if running:
            waits = [asyncio.create_task(p.wait()) for p in running]
            _, late = await asyncio.wait(waits, timeout=grace)
            for task in late:
                task.cancel()
        for process in running:
            if process.returncode is None:
                log.warning("worker pid %d did not exit within %gs of SIGTERM; killing it", process.pid, grace)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        self._children.clear()


async def _address_space_limited(pid: int, spec: WorkerSpec) -> bool:
    """Wait until the new worker's hard address-space limit is the spec's (it sets it itself before reading
    its credentials); False if it does not within LIMIT_WAIT, and then it gets no credentials (fail closed).
    Whatever its user made it do before, it cannot raise the limit again, so all it starts is bounded."""
    if not spec.address_space:
        return True
    deadline = time.monotonic() + LIMIT_WAIT
    while time.monotonic() < deadline:
        hard = hard_address_space(pid)
        if hard is not None and hard <= spec.address_space:
            return True
        await asyncio.sleep(0.01)
    log.error("worker %s did not take its address-space limit; not starting it", spec.name)
    return False


def hard_address_space(pid: int) -> int | None:
    """The hard RLIMIT_AS of *pid* in bytes, from /proc (readable without privilege); None: unlimited or gone."""
    try:
        lines = Path(f"/proc/{pid}/limits").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("Max address space"):
            hard = line[len("Max address space") :].split()[1]
            return int(hard) if hard.isdigit() else None
    return None


def describe_exit(code: int | None) -> str:
    """How a child process ended, for the log."""
    if code is None:
        return "failed to start"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"

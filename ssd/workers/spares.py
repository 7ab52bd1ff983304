"""The kernel worker's spare kernels: started ahead, taken by a matching start, stopped when stale.

The decisions are ``ssd.kernels.spares.SparePool``'s; this module starts and
stops the processes. A spare is a ``ManagedKernel`` built by the worker's own
``new_record`` (so it starts exactly as a cold kernel would), whose lifecycle
events are never published (no frontend sees it) while its record goes to the
broker (spares count toward the limits). A start it serves gets it with the
request's name, label, lease and restart flag, and its working folder changed
silently when the request asks for another one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, Protocol

import msgspec
import zmq.asyncio

from ssd.config import KernelsConfig
from ssd.envs import EnvInfo
from ssd.errors import SSDError
from ssd.files import write_atomic
from ssd.kernels import launch
from ssd.kernels.lease import Lease
from ssd.kernels.managed import KernelHooks, ManagedKernel
from ssd.kernels.record import KernelRecord
from ssd.kernels.spares import Spare, SpareKey, SparePool, env_stamp, spares_wanted
from ssd.messages import KERNEL_KINDS, KernelKind, KernelStartRequest


class SpareHost(Protocol):
    """What the keeper needs of its kernel worker (ssd.workers.kernel.KernelWorker)."""

    user: str
    home: str
    config: KernelsConfig
    ctx: zmq.asyncio.Context
    hooks: KernelHooks
    kernels: dict[str, ManagedKernel]

    def new_record(self, content: KernelStartRequest, env: EnvInfo) -> KernelRecord:
        """A kernel's record, checked as for a cold start."""

    def open_relay(self, kernel: ManagedKernel, *, strict: bool = False) -> None:
        """Expose the kernel through its CURVE relay."""


__all__ = ["SpareHost", "SpareKeeper", "chdir_code"]

log = logging.getLogger(__name__)

# Seconds between checks for idle spares and changed environments (a start checks its environment itself).
SWEEP_PERIOD = 1.0


def chdir_code(old: str, new: str) -> str:
    """Silent code that moves a kernel started in *old* to *new*: the folder and the ``sys.path`` entry a
    start there made (``python -m`` puts its folder first), binding no name in the user's namespace."""
    return (
        f"__import__('os').chdir({new!r})\n"
        f"__import__('sys').path[:] = [{new!r} if p == {old!r} else p for p in __import__('sys').path]\n"
    )


class SpareKeeper:
    """The spares of one kernel worker's user."""

    def __init__(self, worker: SpareHost) -> None:
        self.worker = worker
        self.pool = SparePool()
        self.kernels: dict[str, ManagedKernel] = {}
        self.hooks = msgspec.structs.replace(worker.hooks, on_state=self._on_state)
        self._settings = Path(worker.home) / ".local" / "state" / "ssd" / f"spares-{socket.gethostname()}.json"
        self._tasks: set[asyncio.Task[None]] = set()
        # kernel_start handlers whose kernel is not yet among the worker's kernels: each takes a place soon, so
        # neither a refill nor the book's per-user cap (spares count) may have it (a start is never refused).
        self.arriving = 0
        # Spares being stopped, until their record is dropped: they still take their place in the book.
        self._stopping: dict[str, asyncio.Task[None]] = {}

    @contextlib.contextmanager
    def arrival(self) -> Iterator[Callable[[], None]]:
        """A kernel_start handler's place under the per-user limit; call the function yielded once its kernel
        is among the worker's kernels (the place is given back at the end in any case)."""
        done = False

        def arrived() -> None:
            nonlocal done
            if not done:
                done, self.arriving = True, self.arriving - 1

        self.arriving += 1
        try:
            yield arrived
        finally:
            arrived()

    def room(self) -> int:
        """Places left under the per-user limit: the user's kernels, spares (also those being stopped) and
        arriving starts take theirs (16 without a limit)."""
        limit = self.worker.config.max_per_user
        taken = len(self.worker.kernels) + len(self.pool) + len(self._stopping) + self.arriving
        return limit - taken if limit else 16

    # -- serving a start -----------------------------------------------------------------

    async def take(self, content: KernelStartRequest, env: EnvInfo) -> ManagedKernel | None:
        """The spare that serves *content* (None: start cold); any spare of another template is stopped."""
        key = SpareKey(env.prefix, content.kind)
        cwd = launch.check_cwd(content.cwd, self.worker.home)
        for other in self.pool.used(key, dict(content.env_vars), cwd):
            self._spawn(self.stop(other))
        current = env_stamp(env.prefix)
        for stale in self.pool.retire_stale(key, current):
            self._spawn(self.stop(stale))
        spare = self.pool.take(key, dict(content.env_vars), current)
        if spare is None:
            return None
        kernel = self.kernels.pop(spare.kernel_id)
        if kernel.state != "ready" or not await self._move(kernel, spare.cwd, cwd):
            self._retire(kernel)
            return None
        kernel.hooks = self.worker.hooks
        kernel.record = msgspec.structs.replace(
            kernel.record,
            spare=False,
            name=content.name or kernel.record.name,
            label=content.label,
            start_token=content.start_token,
            lease=content.lease,
            auto_restart=content.restart,
            cwd=cwd,
            started=time.time(),
        )
        kernel.lease = Lease(content.lease) if content.lease else None
        return kernel

    async def _move(self, kernel: ManagedKernel, old: str, new: str) -> bool:
        """Change a spare's working folder without a trace in its history; False if it did not work."""
        if old == new:
            return True
        content = {"code": chdir_code(old, new), "silent": True, "store_history": False, "allow_stdin": False}
        try:
            reply = await kernel.link.request("shell", "execute_request", content, timeout=5.0)
        except Exception:  # a silent or dying spare: start cold instead
            return False
        return reply.get("status") == "ok"

    async def make_room(self) -> None:
        """While the user's kernels, spares and arriving starts (this one too) are over the per-user limit, stop
        a spare or wait for one being stopped: the spare's record goes before the cold kernel's comes (the book
        would refuse that one beyond the user's cap; a start is never refused for a spare)."""
        while self.room() < 0:
            if self.pool.spares:
                await self.stop(next(iter(self.pool.spares)))
            elif self._stopping:
                await asyncio.wait(set(self._stopping.values()), return_when=asyncio.FIRST_COMPLETED)
            else:
                return

    # -- refilling -----------------------------------------------------------------------

    def refill_soon(self, kind: KernelKind, env: EnvInfo) -> None:
        """Refill after the reply went out: the start that used a spare answers first."""
        asyncio.get_running_loop().call_soon(self._refill_logged, kind, env)

    def _refill_logged(self, kind: KernelKind, env: EnvInfo) -> None:
        try:
            self.refill(kind, env)
        except (SSDError, OSError) as exc:  # the folder or environment went away since the start
            log.warning("no spare kernel for %s in %s: %s", self.worker.user, env.prefix, exc)

    def refill(self, kind: KernelKind, env: EnvInfo) -> None:
        """Start the spares the pool misses for (env, kind), within the per-user limit, in the background."""
        key = SpareKey(env.prefix, kind)
        template = self.pool.template(key)
        if template is None:
            return
        for _ in range(self.pool.missing(key, self.wanted(env.prefix), self.room())):
            content = KernelStartRequest(env=env.prefix, kind=kind, cwd=template[1], env_vars=template[0])
            record = self.worker.new_record(content, env)
            record = msgspec.structs.replace(record, spare=True, name=f"spare: {record.name}")
            self.pool.add(Spare(record.kernel_id, key, template[0], template[1], env_stamp(env.prefix)))
            kernel = ManagedKernel(self.worker.ctx, record, self.hooks)
            self.kernels[record.kernel_id] = kernel
            self._spawn(self._start(kernel))

    async def _start(self, kernel: ManagedKernel) -> None:
        try:
            self.worker.open_relay(kernel)
            await kernel.start()
        except Exception as exc:
            log.warning("a spare kernel of %s did not start: %s", self.worker.user, exc)
            self.pool.remove(kernel.kernel_id)
            self.kernels.pop(kernel.kernel_id, None)
            kernel.abandon()
            return
        self.pool.mark_ready(kernel.kernel_id)

    # -- stopping ------------------------------------------------------------------------

    def start_watching(self) -> None:
        """Sweep in the background until ``stop_all``."""
        self._spawn(self._watch())

    async def _watch(self) -> None:
        """Sweep every second or so (a few ``stat`` calls per environment with spares)."""
        period = min(SWEEP_PERIOD, self.worker.config.spare_idle / 4)
        while True:
            await asyncio.sleep(period)
            self.sweep()

    def sweep(self) -> None:
        """Stop spares left idle for kernels.spare_idle, and those whose environment changed on disk."""
        for kernel_id in {*self.pool.idle(self.worker.config.spare_idle), *self.pool.outdated(env_stamp)}:
            self._spawn(self.stop(kernel_id))

    def stop_some(self, kernel_ids: list[str]) -> None:
        """The broker's SPARES_STOP: these spares (the host's limit needs the room), or all (no session left)."""
        for kernel_id in kernel_ids or self.pool.clear():
            self._spawn(self.stop(kernel_id))

    async def stop(self, kernel_id: str) -> None:
        """Stop one spare (not one taken meanwhile)."""
        self.pool.remove(kernel_id)
        kernel = self.kernels.pop(kernel_id, None)
        if kernel is not None:
            await self._retire(kernel)

    def _retire(self, kernel: ManagedKernel) -> asyncio.Task[None]:
        """Shut a spare down in a task, counted as stopping (it keeps its place) until its record is dropped."""
        task = asyncio.create_task(self._shutdown(kernel))
        self._stopping[kernel.kernel_id] = task
        task.add_done_callback(lambda _: self._stopping.pop(kernel.kernel_id, None))
        return task

    async def stop_all(self) -> None:
        """Stop every spare (the worker stops: spares never outlive it)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*(self.stop(k) for k in self.pool.clear()), return_exceptions=True)
        await asyncio.gather(*self._stopping.values(), return_exceptions=True)
        for kernel in list(self.kernels.values()):  # still starting: not in the pool's ready set
            kernel.abandon()
        self.kernels.clear()

    async def _shutdown(self, kernel: ManagedKernel) -> None:
        if kernel.state == "starting":
            kernel.abandon()
        else:
            await kernel.shutdown()

    def _on_state(self, kernel: ManagedKernel, state: str, extra: dict[str, Any]) -> None:
        """A spare's lifecycle is never published; one that died is cleared away."""
        if state == "dead" and kernel.kernel_id in self.kernels:
            self._spawn(self.stop(kernel.kernel_id))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the user's own numbers ------------------------------------------------------------

    def resize(self, env: EnvInfo, count: int) -> int:
        """The user's own number for *env* (remembered): extra spares stopped, missing ones started."""
        kept = self.set_own(env.prefix, count)
        for kind in {spare.key.kind for spare in self.pool.spares.values() if spare.key.env == env.prefix}:
            for spare in self.pool.of(SpareKey(env.prefix, kind))[kept:]:
                self._spawn(self.stop(spare.kernel_id))
        for kernel_kind in KERNEL_KINDS:
            self.refill(kernel_kind, env)
        return kept

    def wanted(self, prefix: str) -> int:
        """Spares to keep for an environment: the user's own number for this host, capped by the host's."""
        own = self._own().get(prefix)
        return spares_wanted(self.worker.config.spares, own if isinstance(own, int) else None)

    def set_own(self, prefix: str, count: int) -> int:
        """Remember the user's number for an environment on this host; returns what will be kept."""
        own = {**self._own(), prefix: count}
        self._settings.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self._settings, json.dumps(own, indent=1, sort_keys=True))
        return self.wanted(prefix)

    def _own(self) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            found = json.loads(self._settings.read_text())
            if isinstance(found, dict):
                return found
        return {}

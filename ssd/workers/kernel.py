"""The kernel service: one worker per user, running as that user, starting and keeping kernels.

Kernels run in their own sessions, so they outlive this worker; the broker
keeps their records (sent with ``wire.KERNEL``) and hands them to the next
worker (``wire.ADOPT``), which takes them over or reports them dead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import msgspec

from ssd import contract
from ssd.config import KernelsConfig
from ssd.envs import EnvDiscovery, EnvInfo, discovery_options, find_env
from ssd.errors import ErrorCode, SSDError
from ssd.kernels import launch
from ssd.kernels.clients import count_clients
from ssd.kernels.connection import classic_info, served_connection
from ssd.kernels.lease import lease_lapsed
from ssd.kernels.managed import KernelHooks, ManagedKernel
from ssd.kernels.placement import Placements, job_fields, placed
from ssd.kernels.record import KernelRecord, RecordSaves
from ssd.kernels.relay import PortBusy, new_relay_keys
from ssd.kernels.relayhost import RelayHost
from ssd.kernels.slurm.limits import SlurmConfig
from ssd.messages import KernelStartRequest
from ssd.replies import KernelDescription, KernelStartReply
from ssd.workers import kernel_ops as ops
from ssd.workers import wire
from ssd.workers.base import Worker
from ssd.workers.spares import SpareKeeper

__all__ = ["KernelWorker"]

log = logging.getLogger(__name__)

# How long an adopted kernel's relay waits for its old ports before taking new ones (seconds).
RELAY_PORT_WAIT = 10.0


class KernelWorker(Worker):
    """Serves the ``kernel_*`` requests for its one user."""

    service = "kernel"
    capacity = 32

    def __init__(self, credentials: wire.Credentials) -> None:
        super().__init__(credentials)
        options = credentials.options
        self.user = str(options.get("user", ""))
        self.config = msgspec.convert(options.get("kernels", {}), KernelsConfig)
        self.bind_ip = str(options.get("kernel_ip", "127.0.0.1"))
        relay_ip = options.get("relay_ip")
        # ipc behind the relay: no kernel socket another local user could reach (tcp: the plain LAN mode).
        self.kernel_transport = str(options.get("kernel_transport", "ipc" if relay_ip else "tcp"))
        self.relays = RelayHost(str(relay_ip)) if relay_ip else None
        self.home = os.environ.get("HOME") or str(Path("~").expanduser())
        self.discovery = EnvDiscovery(discovery_options(options.get("envs", {})), Path(self.home), dict(os.environ))
        self.kernels: dict[str, ManagedKernel] = {}
        self.saves = RecordSaves(self._on_record)
        self.hooks = KernelHooks(
            on_state=self._on_state,
            on_record=self._on_record,
            start_timeout=self.config.start_timeout,
            shutdown_grace=self.config.shutdown_grace,
            max_restarts=self.config.max_restarts,
            save=self.saves.save,
        )
        self._background: set[asyncio.Task[None]] = set()
        slurm = msgspec.convert(options.get("slurm", {}), SlurmConfig)
        self.placements = Placements(slurm, self.home, relayed=self.relays is not None, on_placed=self.open_relay)
        self.spares = SpareKeeper(self)

    # -- reporting ----------------------------------------------------------------------

    def _on_state(self, kernel: ManagedKernel, state: str, extra: dict[str, Any]) -> None:
        """Publish a lifecycle event: no key, no ports (any subscriber may read it)."""
        record = kernel.record
        content = {"kernel_id": record.kernel_id, "name": record.name, "env": record.env, "kind": record.kind}
        if record.start_token:
            content["start_token"] = record.start_token
        self.publish("kernel_state", {**content, "state": state, **extra})

    def _on_record(self, kernel_id: str, record: KernelRecord | None) -> None:
        """Tell the broker what to remember (or forget) in its state store."""
        if record is None:
            self.kernels.pop(kernel_id, None)
            if self.relays is not None:
                self.relays.close(kernel_id)
        body = wire.encode(record) if record is not None else b""
        self.socket.send_multipart([wire.TAG, wire.KERNEL, kernel_id.encode(), body])

    def remember(self, kernel: ManagedKernel) -> None:
        """Send a kernel's changed record to the broker's state store."""
        self._on_record(kernel.kernel_id, kernel.record)

    # -- adoption and background --------------------------------------------------------

    def handle_command(self, command: bytes, args: list[bytes]) -> None:
        """ADOPT from the broker: the kernels a previous worker of this user left running; SPARES_STOP; SAVED."""
        if command == wire.SPARES_STOP:
            self.spares.stop_some([arg.decode() for arg in args])
            return
        if command == wire.SAVED and len(args) == 1:
            self.saves.saved(args[0].decode(errors="replace"))
            return
        if command != wire.ADOPT or len(args) != 1:
            super().handle_command(command, args)
            return
        for record in wire.decode(args[0], list[KernelRecord]):
            if record.user != self.user or record.kernel_id in self.kernels:
                continue
            try:
                kernel = self.placements.kernel(self.ctx, record, self.spares.hooks if record.spare else self.hooks)
            except Exception:  # a record this worker cannot use (the broker stores what a worker sent)
                log.exception("kernel record %s cannot be adopted; forgetting it", record.kernel_id)
                self._on_record(record.kernel_id, None)
                continue
            adopted = kernel.adopt()
            if record.spare:  # a previous worker's spare: the start it followed is not known here
                self._spawn_task(kernel.shutdown() if adopted else _forgotten(kernel))
            elif adopted:
                self.kernels[record.kernel_id] = kernel
                self._spawn_task(self._reopen_relay(kernel))
            else:
                kernel.state = "dead"
                self._on_state(kernel, "dead", {"exit_code": None, "reason": "its process ended while ssd was away"})
                kernel.forget()

    async def background(self) -> None:
        """Shut down kernels whose frontend's lease lapsed, and idle ones if the host asks for it."""
        idle, grace = self.config.idle_cull, self.config.lease_grace
        period = max(0.25, min(idle / 4 if idle else 30.0, grace / 4, 30.0))
        self.spares.start_watching()
        while True:
            await asyncio.sleep(period)
            for kernel in list(self.kernels.values()):
                reason = self._cull_reason(kernel, idle)
                if reason is not None:
                    log.info("kernel %s of %s culled: %s", kernel.kernel_id, self.user, reason)
                    self._spawn_task(kernel.shutdown("culled", reason))

    def _cull_reason(self, kernel: ManagedKernel, idle: float) -> str | None:
        """Why a kernel should go now (``lease_expired``, ``idle``), or None."""
        if kernel.state != "ready":
            return None
        if self._lease_lapsed(kernel):
            return "lease_expired"
        return "idle" if idle and self._cullable(kernel, idle) else None

    def _lease_lapsed(self, kernel: ManagedKernel) -> bool:
        relay = self.relays.get(kernel.kernel_id) if self.relays is not None else None
        # A plain kernel's clients are counted, but when the last one left is not known.
        quiet_for = time.time() - relay.last_client_change if relay is not None else float("inf")
        clients = self.clients(kernel) if kernel.lease is not None else 0
        return lease_lapsed(
            kernel.lease, grace=self.config.lease_grace, clients=clients, quiet_for=quiet_for, now=time.monotonic()
        )

    def _cullable(self, kernel: ManagedKernel, idle: float) -> bool:
        if kernel.record.kind == "spyder" and not self.config.cull_spyder:
            return False
        if kernel.link.execution_state == "busy" or time.time() - self.last_activity(kernel) < idle:
            return False
        return self.config.cull_connected or self.clients(kernel) == 0

    async def before_exit(self, reason: str) -> None:
        """On an orderly stop (the broker's STOP, or the SIGTERM that may overtake it), stop every kernel if
        the host is configured so (default: keep them); never when the broker vanished (it will return)."""
        log.info("kernel worker of %s stopping (%s) with %d kernels", self.user, reason, len(self.kernels))
        await self.spares.stop_all()
        if reason != "broker_silent" and self.config.stop_on_exit and self.kernels:
            await asyncio.gather(*(k.shutdown() for k in list(self.kernels.values())), return_exceptions=True)
        for kernel in self.kernels.values():
            kernel.link.close()
        if self.relays is not None:
            self.relays.stop()

    def _spawn_task(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _reopen_relay(self, kernel: ManagedKernel) -> None:
        """An adopted kernel's relay on its old ports, so clients reconnect by themselves; the previous
        worker may still hold them for a few seconds (it exits when it notices the broker is gone)."""
        deadline = time.monotonic() + RELAY_PORT_WAIT
        while kernel.kernel_id in self.kernels:
            try:
                self.open_relay(kernel, strict=time.monotonic() < deadline)
                return
            except PortBusy:
                await asyncio.sleep(0.25)

    def open_relay(self, kernel: ManagedKernel, *, strict: bool = False) -> None:
        """Expose a ready kernel through its CURVE relay (same ports as before, when it had one)."""
        if self.relays is None or kernel.record.relay is None or not placed(kernel.record):
            return
        relay = self.relays.open(kernel.record, strict=strict)
        if relay.ports != kernel.record.relay.get("ports"):
            kernel.record = msgspec.structs.replace(kernel.record, relay={**kernel.record.relay, "ports": relay.ports})
            self._on_record(kernel.kernel_id, kernel.record)

    def connection(self, kernel: ManagedKernel) -> dict[str, Any]:
        """What a client connects to: the relay (with its CURVE keys), or the kernel itself."""
        return served_connection(kernel.record)

    def last_activity(self, kernel: ManagedKernel) -> float:
        """The kernel's last iopub message (every client request makes one), or a client (dis)connecting."""
        relay = self.relays.get(kernel.kernel_id) if self.relays is not None else None
        return max(kernel.link.last_activity, relay.last_client_change if relay is not None else 0.0)

    def clients(self, kernel: ManagedKernel) -> int:
        """Clients connected to the kernel's shell channel."""
        relay = self.relays.get(kernel.kernel_id) if self.relays is not None else None
        if relay is not None:
            return relay.clients
        if kernel.record.connection.get("transport", "tcp") != "tcp":
            return 0  # an ipc kernel whose relay is still reopening: only the relay has clients
        return count_clients(kernel.record.connection["shell_port"], kernel.record.pid)

    # -- helpers for the handlers -------------------------------------------------------

    def get(self, kernel_id: str) -> ManagedKernel:
        """One of this user's kernels; the same error whether it is another user's or none at all."""
        kernel = self.kernels.get(kernel_id)
        if kernel is None:
            raise SSDError(
                f"you have no kernel {kernel_id!r} (see: ssd-ctl kernels HOST)", code=ErrorCode.KERNEL_NOT_FOUND
            )
        return kernel

    def describe(self, kernel: ManagedKernel) -> KernelDescription:
        """A kernel as kernel_list shows it (no secrets)."""
        record = kernel.record
        return KernelDescription(
            kernel_id=record.kernel_id,
            name=record.name,
            label=record.label,
            start_token=record.start_token,
            env=record.env,
            env_name=record.env_name,
            kind=record.kind,
            state=kernel.state,
            execution_state=kernel.link.execution_state,
            started=record.started,
            last_activity=self.last_activity(kernel),
            connections=self.clients(kernel),
            pid=record.pid,
            restarts=record.restarts,
            cwd=record.cwd,
            lease=record.lease,
            lease_left=round(kernel.lease.left(), 1) if kernel.lease is not None else None,
            **job_fields(kernel),
            spare=record.spare,
        )

    def new_record(self, content: KernelStartRequest, env: EnvInfo) -> KernelRecord:
        """Check the request against the environment and the host's rules; build the kernel's record."""
        launch.require_package(env, content.kind)
        cwd = launch.check_cwd(content.cwd, self.home)
        extra = launch.check_env_vars(content.env_vars, self.config.env_allow)
        kernel_id = str(uuid.uuid4())
        connection_file, info = launch.new_connection_file(kernel_id, self.kernel_transport, self.bind_ip)
        relay = {"ip": self.relays.ip, "ports": {}, **new_relay_keys()} if self.relays is not None else None
        return KernelRecord(
            kernel_id=kernel_id,
            user=self.user,
            name=content.name or f"{env.name or Path(env.prefix).name} ({content.kind})",
            env=env.prefix,
            env_name=env.name,
            kind=content.kind,
            pid=0,
            start_ticks=0,
            started=time.time(),
            connection=classic_info(info),
            connection_file=connection_file,
            log_file=connection_file.removesuffix(".json") + ".log",
            cwd=cwd,
            argv=launch.command(env, content.kind, connection_file),
            environ=launch.kernel_environment(env, extra, dict(os.environ)),
            umask=self.config.umask,
            memory_limit_mb=self.config.memory_limit,
            interrupt_mode=_interrupt_mode(env.prefix),
            auto_restart=content.restart,
            relay=relay,
            lease=content.lease,
            label=content.label,
            start_token=content.start_token,
        )

    def adopt_spare(self, kernel: ManagedKernel, began: float) -> dict[str, float]:
        """A spare taken by a start becomes one of the user's kernels, announced as a started one is."""
        self.kernels[kernel.kernel_id] = kernel
        self.remember(kernel)
        self._on_state(kernel, "starting", {})
        self._on_state(kernel, "ready", {})
        return {"prepare": time.monotonic() - began, "spare": 1.0}

    def check_limit(self) -> None:
        """Refuse a start beyond the per-user limit."""
        limit = self.config.max_per_user
        running = sum(1 for kernel in self.kernels.values() if kernel.state != "dead")
        if limit and running >= limit:
            raise SSDError(
                f"you already run {running} kernels here, the most this host allows per user "
                "(stop one: ssd-ctl stop HOST KERNEL)",
                code=ErrorCode.LIMIT_REACHED,
            )


async def _forgotten(kernel: ManagedKernel) -> None:
    kernel.forget()


def _interrupt_mode(prefix: str) -> str:
    """The interrupt mode the environment's own Python kernelspec asks for (default: signal)."""
    spec = Path(prefix) / "share" / "jupyter" / "kernels" / "python3" / "kernel.json"
    try:
        mode = json.loads(spec.read_text()).get("interrupt_mode", "signal")
    except (OSError, ValueError, AttributeError):
        return "signal"
    return "message" if mode == "message" else "signal"


async def kernel_start(worker: KernelWorker, content: KernelStartRequest, request: wire.Request) -> KernelStartReply:
    """Start a kernel, or hand over a matching spare; the reply comes once it answered kernel_info."""
    began = time.monotonic()
    worker.check_limit()
    worker.placements.check(content.placement, content.slurm)
    local = content.placement == "local"  # spares are local kernels: a start in a Slurm job is always cold
    with worker.spares.arrival() as arrived:  # from here on no spare takes this start's place
        env = find_env(await asyncio.to_thread(worker.discovery.list), content.env)
        kernel = await worker.spares.take(content, env) if local else None
        if kernel is not None:
            timing = worker.adopt_spare(kernel, began)
        else:
            await worker.spares.make_room()
            kernel, timing = await _cold_start(worker, content, env, began, arrived)
    if local:
        worker.spares.refill_soon(content.kind, env)
    return KernelStartReply(
        kernel=worker.describe(kernel),
        connection=worker.connection(kernel),
        connection_file=kernel.record.connection_file,
        kernel_info=kernel.summary,
        timing=timing,
    )


async def _cold_start(
    worker: KernelWorker, content: KernelStartRequest, env: EnvInfo, began: float, arrived: Callable[[], None]
) -> tuple[ManagedKernel, dict[str, float]]:
    record = await asyncio.to_thread(worker.new_record, content, env)
    record = worker.placements.prepare(record, content.placement, content.slurm)
    worker.check_limit()  # again: another start may have been admitted while discovery ran
    kernel = worker.placements.kernel(worker.ctx, record, worker.hooks)
    worker.kernels[record.kernel_id] = kernel
    arrived()
    prepared = time.monotonic()
    try:
        # The relay first (it only connects to the kernel's ports), so that the record the broker holds
        # when "ready" goes out already has the relay's ports (the broker seals them into that event).
        worker.open_relay(kernel)
        return kernel, {"prepare": prepared - began, **(await kernel.start())}
    except BaseException:
        kernel.abandon()  # nothing of a failed start may keep running
        raise


KernelWorker.handlers = {
    contract.KERNEL_START.msg_type: kernel_start,
    contract.KERNEL_LIST.msg_type: ops.kernel_list,
    contract.KERNEL_INFO.msg_type: ops.kernel_info,
    contract.KERNEL_INTERRUPT.msg_type: ops.kernel_interrupt,
    contract.KERNEL_RESTART.msg_type: ops.kernel_restart,
    contract.KERNEL_SHUTDOWN.msg_type: ops.kernel_shutdown,
    contract.KERNEL_LEASE.msg_type: ops.kernel_lease,
    contract.SPARES.msg_type: ops.spares,
}

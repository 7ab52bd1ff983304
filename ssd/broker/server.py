"""The broker: binds the sockets, wires the parts together, runs until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pwd
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import zmq
import zmq.asyncio

from ssd import protocol
from ssd.broker.accounts import AccountChecks, AccountSchedule
from ssd.broker.admission import Admission
from ssd.broker.announce import Announcer, summary_txt
from ssd.broker.backend import WorkerRouter
from ssd.broker.control import ControlHandler
from ssd.broker.dispatch import ROUTES
from ssd.broker.edgelink import EdgeLink, EdgePolicy
from ssd.broker.edgeproc import EdgeKeeper, EdgeSpec
from ssd.broker.events import EventPublisher
from ssd.broker.handlers import ServerFacts
from ssd.broker.kernels import KernelBook, become_subreaper, record_cap
from ssd.broker.keyport import KeyServer
from ssd.broker.limiter import LoginLimiter
from ssd.broker.listeners import endpoint, listen_public
from ssd.broker.policy import WORKER_DOMAIN, ConnectionThrottle, WorkerPolicy
from ssd.broker.registry import MAX_CAPACITY, Registry, WorkerRecord
from ssd.broker.sessions import SessionStore
from ssd.broker.supervisor import Supervisor, WorkerSpec
from ssd.broker.zap import Authenticator
from ssd.config import Config
from ssd.edge.link import EDGE_DOMAIN, EdgeCredentials
from ssd.errors import ConfigError, ErrorCode
from ssd.files import write_atomic
from ssd.floodguard.guard import Cut, FloodGuard
from ssd.floodguard.policy import FloodPolicy
from ssd.kernels.transport import channel_plan
from ssd.keys import KeyPair
from ssd.sealed import seal, sealed_context
from ssd.state import open_state
from ssd.users import Account, lookup
from ssd.workers import wire as worker_wire

__all__ = ["Broker", "BrokerOptions"]

log = logging.getLogger(__name__)

LINGER_MS = 200  # time for replies already queued to leave on shutdown
LINK_HWM = 10_000
EDGE_STOP_GRACE = 2.0
# Messages queued per worker connection each way; a worker's replies and events wait (never dropped) when it is
# reached, heartbeats to a worker that does not read are dropped (it is then declared silent).
BACKEND_HWM = 64
# Address space a kernel worker needs for itself (Python, pyzmq, its threads, with MALLOC_ARENA_MAX=2).
WORKER_MIN_MB = 512
# What libzmq holds for one CURVE connection of the backend (measured: 64 MiB for 1000), which the flood guard
# allows on top of workers.flood_threshold: the broker grows legitimately with its workers.
CONNECTION_MEMORY = 80 << 10


@dataclass(frozen=True)
class BrokerOptions:
    """What the broker needs beyond the config file."""

    config: Config
    keys: KeyPair
    mode: str
    name: str
    state_dir: Path
    config_dir: Path
    certificate: str = ""  # PEM (leaf first, then chain) served on the key port; "" = none


class Broker:
    """One asyncio process: the edge's link (control and events), key port, worker backend."""

    def __init__(self, options: BrokerOptions) -> None:
        self.options = options
        self.config = options.config
        self.ctx = zmq.asyncio.Context()
        self.registry = Registry()
        self.wire = protocol.Wire(username="ssd")
        self.state = open_state(options.state_dir)
        self.sessions = SessionStore(self.state)
        kernels = self.config.kernels
        self.kernel_book = KernelBook(
            self.state, record_cap(kernels.max_per_user, kernels.max_per_host), supervised=self._supervises
        )
        auth = self.config.auth
        self.limiter = LoginLimiter(
            base_delay=auth.failure_delay,
            max_failures=auth.max_failures,
            lockout=auth.lockout,
            per_address_inflight=auth.pool_size - 1,  # one address never holds the whole auth pool
        )
        self.ports: dict[str, int] = {}
        self._listeners: dict[str, socket.socket] = {}
        self.edge: EdgeKeeper | None = None
        self._guard: FloodGuard | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopped = asyncio.Event()
        self.failed = False  # set when a loop died: the daemon then exits non-zero
        self._auth: Authenticator | None = None
        self.announcer: Announcer | None = None
        # How many kernels run here, for the zeroconf summary.
        self.kernel_count: Callable[[], int] = self.kernel_book.count

    def _worker_specs(self) -> list[WorkerSpec]:
        auth = self.config.auth
        options = {
            "pam_service": auth.pam_service,
            "authorized_keys": auth.authorized_keys,
            "admin_keys_dir": str(self.options.config_dir / "authorized_keys.d"),
            "min_uid": auth.min_uid,
            "allow_root": auth.allow_root,
            "allow_users": auth.allow_users,
            "deny_users": auth.deny_users,
            "allow_groups": auth.allow_groups,
            "deny_groups": auth.deny_groups,
            "permit_empty_passwords": auth.permit_empty_passwords,
            "require_listed_shell": auth.require_listed_shell,
            # User mode: nobody but the daemon's own user may log in.
            "only_user": pwd.getpwuid(os.geteuid()).pw_name if self.options.mode == "user" else None,
        }
        specs = [WorkerSpec(f"auth-{n}", "auth", options) for n in range(1, auth.pool_size + 1)]
        if self.config.workers.diag:
            specs.append(WorkerSpec("diag", "diag"))
        return specs

    async def start(self) -> None:
        """Install ZAP, bind every socket, start the edge, workers and loops."""
        # Clients' handshakes (and their throttle) are the edge's; this handler admits workers and the edge.
        throttle = ConnectionThrottle(self.config.auth.connection_burst, self.config.auth.connection_rate)
        self._auth = Authenticator(self.ctx, log=logging.getLogger("ssd.zap"), throttle=throttle)
        if not become_subreaper():
            log.warning("not a child subreaper: kernels whose worker died are reaped by init, if at all")
        edge_account = self._edge_account()
        self._auth.start()  # before any bind: without a handler libzmq admits every key
        self._auth.configure_curve_callback(WORKER_DOMAIN, WorkerPolicy(self.registry.is_expected))
        edge_policy = EdgePolicy()
        self._auth.configure_curve_callback(EDGE_DOMAIN, edge_policy)
        backend = self._curve_socket(zmq.ROUTER, WORKER_DOMAIN)
        # A per-user worker is its user's (DESIGN §1): its frames are bounded (a larger one drops its
        # connection), and so is what queues per connection; a full queue only slows that worker down.
        backend.maxmsgsize = worker_wire.MAX_FRAME
        # Towards a worker a ROUTER drops what does not fit, silently: the queue must hold every request the
        # registry may assign it (its capacity, at most MAX_CAPACITY), plus heartbeats and commands.
        backend.sndhwm = MAX_CAPACITY + BACKEND_HWM
        backend.rcvhwm = BACKEND_HWM
        self._guard = self._backend_guard(backend)  # before the bind: it must see every connection
        # The edge forwards client frames, each within max_message_size, so the link's limit is the same.
        link = self._curve_socket(zmq.ROUTER, EDGE_DOMAIN)
        link.sndhwm = link.rcvhwm = LINK_HWM
        server = self.config.server
        self._listeners = listen_public(server.bind, (server.port, self.config.events_port, self.config.key_port))
        self.ports = {name: sock.getsockname()[1] for name, sock in self._listeners.items()}
        backend_port = self._bind(backend, "127.0.0.1", 0)
        link_port = self._bind(link, "127.0.0.1", 0)
        edge_link = EdgeLink(link, edge_policy)
        self._build(edge_link, edge_link.events, backend, backend_port)
        self._spawn(KeyServer(self.options.keys.public, self._key_info()).serve(self._listeners["key"]))
        self.edge = EdgeKeeper(EdgeSpec(self._edge_credentials(link_port), edge_account), on_spawn=edge_policy.expect)
        self.edge.start()
        self._write_runtime_file()
        self._announce()
        log.info(
            "ssd %s mode listening on %s: control %d, events %d, key %d (fingerprint %s)",
            self.options.mode,
            server.bind,
            self.ports["control"],
            self.ports["events"],
            self.ports["key"],
            self.options.keys.fingerprint,
        )

    def _build(self, control: Any, events: Any, backend: Any, backend_port: int) -> None:
        specs = self._worker_specs()
        self.events = EventPublisher(events, self.wire)
        self.supervisor = Supervisor(
            endpoint=f"tcp://127.0.0.1:{backend_port}",
            server_key=self.options.keys.public,
            heartbeat_interval=self.config.workers.heartbeat_interval,
            log_level=self.config.server.log_level,
            backoff_max=self.config.workers.restart_backoff_max,
            expect=self.registry.expect,
            on_exit=lambda key: self.router.worker_exited(key),
        )
        self.router = WorkerRouter(
            backend,
            self.registry,
            self.config.workers,
            answer=lambda pending, content: self.control.answer(pending, content),
            publish=self.events.publish,
            kill=self.supervisor.kill,
            spawn=self._spawn_user_worker,
            retire=self.supervisor.retire,
            kernels=self.kernel_book,
        )
        self.router.kernels_changed = self.kernels_changed
        self.router.complete_event = self._seal_kernel_connection
        facts = ServerFacts(
            name=self.options.name,
            mode=self.options.mode,
            fingerprint=self.options.keys.fingerprint,
            public_key=self.options.keys.public.decode(),
            control_port=self.ports["control"],
            events_port=self.ports["events"],
            key_port=self.ports["key"],
            started=time.time(),
            capabilities=_capabilities({s.service for s in specs} | set(USER_SERVICE_OPTIONS)),
            kernel_transport=self.config.kernels.transport,
        )
        self.control = ControlHandler(
            control,
            self.wire,
            facts,
            self.router,
            self.config.server,
            services={s.service for s in specs} | set(USER_SERVICE_OPTIONS),
            sessions=self.sessions,
            limiter=self.limiter,
            session_lifetime=self.config.auth.session_lifetime,
            permit_empty_passwords=self.config.auth.permit_empty_passwords,
        )
        self.accounts = AccountChecks(
            AccountSchedule(self.config.auth.account_recheck),
            sessions=self.sessions,
            registry=self.registry,
            submit=self.router.submit,
            answer=self.control.answer,
        )
        self.control.admission.update(Admission(self.config, self.kernel_book, self.registry).checks())
        for coro in (
            self.control.run(),
            self.router.run(),
            self.router.watch(),
            self.accounts.run(),
            self.events.publish_status(self.config.server.status_interval, self._status_extra),
        ):
            self._spawn(coro)
        for spec in specs:
            self.supervisor.start(spec)
        # Kernels outlive the daemon: their users' kernel workers start now to watch them again
        # (no session asks for them: the sessions' accounts are checked at once by self.accounts).
        for user in sorted(self.kernel_book.users()):
            self._start_user_worker("kernel", user)

    def _backend_guard(self, backend: zmq.asyncio.Socket) -> FloodGuard | None:
        """A flood guard on the backend (DESIGN §1, rule 1): frames are bounded, their count is not, and a
        user's own worker could send one message of countless 2-byte frames that libzmq holds whole."""
        threshold = self.config.workers.flood_threshold
        if not threshold:
            log.warning("workers.flood_threshold is 0: a user's own worker can grow the broker without bound")
            return None
        loop = asyncio.get_running_loop()
        guard = FloodGuard(
            zmq.Context.shadow(self.ctx.underlying),
            [backend],
            FloodPolicy(threshold << 20, per_connection=CONNECTION_MEMORY),
            what="the broker",
            on_cut=lambda cut: loop.call_soon_threadsafe(self._worker_cut, cut),
        )
        guard.start_guarding()
        return guard

    def _worker_cut(self, cut: Cut) -> None:
        """A cut that gave back half the threshold held a flood; one that freed less was an innocent bystander's
        (memory grew for another reason) and counts against nobody."""
        if cut.freed < (self.config.workers.flood_threshold << 20) // 2 or cut.uid is None:
            return
        # The user is stopped: their connections go too (a stolen key's included, which then cannot come back).
        # Not in user mode, where every worker, the auth pool's too, is the broker's own uid.
        if self.router.connection_cut(cut.uid) and self._guard is not None and cut.uid != os.geteuid():
            self._guard.cut_owner(cut.uid)

    def _supervises(self, pid: int) -> bool:
        """Whether *pid* is a worker or the edge, which the broker waits for itself (the kernel book never
        reaps them, whatever a kernel record says)."""
        edge = self.edge
        return (edge is not None and edge.pid == pid) or self.supervisor.supervises(pid)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        task.add_done_callback(self._task_ended)
        self._tasks.append(task)
        return task

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        """A broker loop must never end on its own: if one does, stop (fail closed)."""
        if task.cancelled():
            return
        error = task.exception()
        log.critical("broker task %s ended (%r); shutting down", task.get_name(), error, exc_info=error)
        self.failed = True
        self.stop()

    def _announce(self) -> None:
        """Start the zeroconf announcer as a broker task (unless discovery.announce is off)."""
        discovery = self.config.discovery
        if not discovery.announce:
            return
        self.announcer = Announcer(
            name=self.options.name,
            port=self.ports["control"],
            summary=self._summary,
            interfaces=discovery.interfaces,
            bind=self.config.server.bind,
            refresh_interval=discovery.refresh_interval,
            txt_min_interval=discovery.txt_min_interval,
            host_tag=self.options.keys.fingerprint.removeprefix("SHA256:")[:8],
        )
        self._announcing = self._spawn(self.announcer.run())

    def _summary(self) -> dict[str, str]:
        return summary_txt(
            fingerprint=self.options.keys.fingerprint,
            events_port=self.ports["events"],
            key_port=self.ports["key"],
            mode=self.options.mode,
            kernels=self.kernel_count(),
            description=self.config.discovery.description,
            transport=self.config.kernels.transport,
        )

    def kernels_changed(self) -> None:
        """Tell the announcer the kernel count moved (it updates TXT, rate-limited); event loop only."""
        if self.announcer is not None:
            self.announcer.refresh_soon()

    def _seal_kernel_connection(self, worker: WorkerRecord, kind: str, content: dict[str, Any]) -> None:
        """A kernel became ready: its connection info goes out sealed to each key bound to its user, so that
        every session of that user can attach (nobody else can read it; see ssd.sealed)."""
        if worker.service != "kernel" or worker.user is None or kind != "kernel_state":
            return
        kernel_id = str(content.get("kernel_id", ""))
        if content.get("state") not in ("ready", "restarted"):
            return
        info = self.kernel_book.connection_of(worker.user, kernel_id)
        keys = [key.encode() for key in self.sessions.keys_of(worker.user)]
        if info is not None and keys:
            server = self.options.keys
            content["sealed_connection"] = seal(
                json.dumps(info).encode(),
                keys,
                sealed_context(kernel_id),
                sender_public=server.public,
                sender_secret=server.secret,
            )

    def _spawn_user_worker(self, service: str, user: str) -> None:
        """For a session's request: start *user*'s own worker once the auth pool says the account is enabled."""
        name = f"{service}:{user}"
        if self.supervisor.running(name):
            self.supervisor.revive(name)
            return
        self.accounts.require(user, lambda: self._start_user_worker(service, user))

    def _start_user_worker(self, service: str, user: str) -> None:
        """Start *user*'s own worker for *service* (as that user) unless it runs; revive one being retired."""
        name = f"{service}:{user}"
        if self.supervisor.running(name):
            self.supervisor.revive(name)
            return
        account = lookup(user)
        if account is None:
            log.error("cannot start the %s worker of %s: no such account", service, user)
            return
        options = USER_SERVICE_OPTIONS[service](self.config)
        limit = worker_address_space(self.config.kernels.memory_limit) if service == "kernel" else 0
        self.supervisor.start(WorkerSpec(name, service, options, user=account, address_space=limit))

    def _status_extra(self) -> dict[str, Any]:
        return {"name": self.options.name, "workers": len(self.registry.workers)}

    def _key_info(self) -> dict[str, str]:
        info = {"name": self.options.name, "fingerprint": self.options.keys.fingerprint}
        if self.options.certificate:  # for clients that verify it against a CA file (ssd.certs)
            info["certificate"] = self.options.certificate
        return info

    def _edge_account(self) -> Account | None:
        """Whom the edge runs as: ``server.edge_user`` in system mode, ourselves (None) in user mode."""
        if self.options.mode == "user":
            return None
        name = self.config.server.edge_user
        account = lookup(name)
        if account is None:
            raise ConfigError(
                f"server.edge_user is {name!r}, which is no account on this host; "
                "create it (useradd --system --no-create-home --shell /usr/sbin/nologin NAME) or name another"
            )
        return account

    def _edge_credentials(self, link_port: int) -> EdgeCredentials:
        server, keys = self.config.server, self.options.keys
        return EdgeCredentials(
            link_endpoint=f"tcp://127.0.0.1:{link_port}",
            link_public="",  # made per spawn by EdgeKeeper
            link_secret="",
            server_public=keys.public.decode(),
            server_secret=keys.secret.decode(),
            control_fd=self._listeners["control"].fileno(),
            events_fd=self._listeners["events"].fileno(),
            control_endpoint=endpoint(server.bind, self.ports["control"]),
            events_endpoint=endpoint(server.bind, self.ports["events"]),
            ipv6=server.bind == "*" or ":" in server.bind,
            hwm=server.hwm,
            max_message_size=server.max_message_size,
            connection_burst=self.config.auth.connection_burst,
            connection_rate=self.config.auth.connection_rate,
            memory_limit=server.edge_memory_limit << 20,
            flood_threshold=server.edge_flood_threshold << 20,
            log_level=server.log_level,
        )

    def _socket(self, kind: int) -> zmq.asyncio.Socket:
        sock = self.ctx.socket(kind)
        sock.linger = LINGER_MS
        sock.sndhwm = sock.rcvhwm = self.config.server.hwm
        sock.maxmsgsize = self.config.server.max_message_size
        return sock

    def _curve_socket(self, kind: int, domain: str) -> zmq.asyncio.Socket:
        sock = self._socket(kind)
        sock.curve_server = True
        sock.curve_secretkey = self.options.keys.secret
        sock.zap_domain = domain.encode()
        return sock

    def _bind(self, sock: zmq.asyncio.Socket, address: str, port: int) -> int:
        sock.ipv6 = address == "*" or ":" in address
        host = f"[{address}]" if ":" in address else address
        try:
            sock.bind(f"tcp://{host}:{port or '*'}")
        except zmq.ZMQError as exc:
            raise OSError(exc.errno, f"cannot bind {address}:{port}: {exc.strerror}") from None
        return int(sock.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])

    def _write_runtime_file(self) -> None:
        """Tell local tools (and tests) the bound ports: ``STATE_DIR/daemon.json``."""
        info = {
            "pid": os.getpid(),
            "mode": self.options.mode,
            "name": self.options.name,
            "bind": self.config.server.bind,
            "fingerprint": self.options.keys.fingerprint,
            "public_key": self.options.keys.public.decode(),
            **{f"{name}_port": port for name, port in self.ports.items()},
        }
        path = self.options.state_dir / "daemon.json"
        write_atomic(path, json.dumps(info, indent=2) + "\n", mode=0o644)

    async def wait_stopped(self) -> None:
        """Return once stop() was called."""
        await self._stopped.wait()

    def stop(self) -> None:
        """Ask the broker to shut down (safe to call from a signal handler)."""
        self._stopped.set()

    async def shutdown(self) -> None:
        """Stop accepting, finish or fail in-flight requests, stop workers, close sockets."""
        if not hasattr(self, "control"):  # start() failed before the parts existed
            self._close()
            return
        grace = self.config.server.shutdown_grace
        self.control.accepting = False
        if self.announcer is not None:  # goodbye first, so browsers drop this host at once
            self._announcing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._announcing
            await self.announcer.stop()
        deadline = time.monotonic() + grace
        while self.registry.by_request and time.monotonic() < deadline:  # noqa: ASYNC110 (bounded poll on shutdown)
            await asyncio.sleep(0.05)
        for pending in self.registry.drain():
            self.control.answer(
                pending, protocol.error_content(ErrorCode.SHUTTING_DOWN, "the server shut down before answering")
            )
        self.supervisor.stopping_now()  # workers that exit on STOP are not restarted
        self.router.stop_workers()
        kernels = self.config.kernels
        # Kernel workers told to stop their kernels need the kernels' own grace period, and a little more.
        worker_grace = max(grace, kernels.shutdown_grace + 2.0) if kernels.stop_on_exit else grace
        await self.supervisor.stop_all(worker_grace)
        if self.edge is not None:
            await self.edge.stop(EDGE_STOP_GRACE)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(FileNotFoundError):
            (self.options.state_dir / "daemon.json").unlink()
        self._close()
        log.info("ssd stopped")

    def _close(self) -> None:
        for listener in self._listeners.values():
            listener.close()
        self.state.close()
        if self._guard is not None:
            self._guard.stop()
        if self._auth is not None:
            self._auth.stop()
        self.ctx.destroy(linger=LINGER_MS)


def worker_address_space(memory_limit_mb: int) -> int:
    """The hard RLIMIT_AS (bytes) of a kernel worker, which its kernels inherit: kernels.memory_limit, but
    never below what the worker itself needs (WORKER_MIN_MB); 0 = none. A smaller memory_limit is applied to
    each kernel by the worker only: advisory against its own user (README, Limits)."""
    return max(memory_limit_mb, WORKER_MIN_MB) << 20 if memory_limit_mb else 0


def _capabilities(services: set[str]) -> tuple[str, ...]:
    families = []
    for route in ROUTES.values():
        if route.service is None or route.service in services:
            families.append(route.msg_type.removesuffix("_request"))
    return tuple(families)


# Per-user services (one worker per user, running as that user, started on the
# user's first request) and the options each worker gets from the config.
USER_SERVICE_OPTIONS: dict[str, Callable[[Config], dict[str, Any]]] = {
    "env": lambda config: {"envs": msgspec.to_builtins(config.envs)},
    "kernel": lambda config: {
        "envs": msgspec.to_builtins(config.envs),
        "kernels": msgspec.to_builtins(config.kernels),
        **channel_plan(config.kernels.transport, config.kernels.ip, config.server.bind)._asdict(),
    },
}

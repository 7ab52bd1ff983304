"""The broker's parts, built in dependency order with explicit arguments: the composition root.

Each part gets what it uses when it is made; nothing is assigned afterwards.
Where two parts answer each other, one of them reports through a queue the
other reads in a loop (the supervisor's ``exits``, the flood guard's cuts).
The order (``compose``):

    context, state, registry, sessions, login limiter      leaves
    ZAP (started before any bind), sockets and ports       ssd.broker.sockets, floodcuts
    event publisher, supervisor, edge keeper               the processes the broker keeps
    kernel book, announcer, kernel service                 ssd.broker.kernel_service
    replies, worker router, account checks, worker starter the backend side
    control handler, cut response, key server              the client side

``Broker`` (``ssd.broker.server``) runs what this builds, and shuts it down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq.asyncio

from ssd import protocol
from ssd.broker.accounts import AccountChecks, AccountSchedule
from ssd.broker.admission import Admission
from ssd.broker.announce import Announcer, summary_txt
from ssd.broker.answers import Replies
from ssd.broker.backend import WorkerRouter
from ssd.broker.control import ControlHandler
from ssd.broker.dispatch import ROUTES
from ssd.broker.edgelink import EdgeLink, EdgePolicy
from ssd.broker.edgeproc import EdgeKeeper, EdgeSpec, edge_account, edge_credentials
from ssd.broker.events import EventPublisher
from ssd.broker.floodcuts import CutResponse, backend_guard
from ssd.broker.handlers import ServerFacts
from ssd.broker.kernel_service import ConnectionSealer, KernelService
from ssd.broker.kernels import KernelBook, become_subreaper, record_cap
from ssd.broker.keyport import KeyServer
from ssd.broker.limiter import LoginLimiter
from ssd.broker.policy import WORKER_DOMAIN, ConnectionThrottle, WorkerPolicy
from ssd.broker.registry import Registry
from ssd.broker.sessions import SessionStore
from ssd.broker.sockets import (
    LINGER_MS,
    backend_socket,
    bind_loopback,
    close_listeners,
    link_socket,
    listen_public,
)
from ssd.broker.supervisor import Supervisor, WorkerSpec
from ssd.broker.workerstart import WorkerStarter, pool_specs, services
from ssd.broker.zap import Authenticator
from ssd.config import Config
from ssd.edge.link import EDGE_DOMAIN
from ssd.floodguard.guard import Cut, FloodGuard
from ssd.kernels.placement import offered, placement_txt, slurm_offer
from ssd.keys import KeyPair
from ssd.state import open_state

__all__ = ["BrokerOptions", "Parts", "compose"]

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Core:
    """The leaves: the ZeroMQ context, the state store and what is kept in it, the login limiter."""

    ctx: zmq.asyncio.Context
    registry: Registry
    wire: protocol.Wire
    sessions: SessionStore
    limiter: LoginLimiter
    state: sqlite3.Connection


@dataclass(frozen=True)
class Wiring:
    """The bound sockets: the public listeners with their ports, the backend and the edge's link."""

    listeners: dict[str, socket.socket]
    ports: dict[str, int]
    backend: zmq.asyncio.Socket
    backend_port: int
    link: EdgeLink
    link_port: int
    cuts: asyncio.Queue[Cut]
    guard: FloodGuard | None


@dataclass(frozen=True)
class Keepers:
    """What keeps the broker's processes and its host's facts: events, workers, the edge, kernels, zeroconf."""

    events: EventPublisher
    supervisor: Supervisor
    edge: EdgeKeeper
    kernels: KernelService
    summary: HostSummary
    announcer: Announcer | None


@dataclass(frozen=True)
class Parts:
    """Everything ``Broker`` runs and stops."""

    core: Core
    wiring: Wiring
    keepers: Keepers
    replies: Replies
    router: WorkerRouter
    accounts: AccountChecks
    starter: WorkerStarter
    control: ControlHandler
    cut_response: CutResponse | None
    key_server: KeyServer
    specs: list[WorkerSpec]


class HostSummary:
    """What the announcement's TXT and the ``host_status`` events say about this host."""

    def __init__(self, options: BrokerOptions, ports: dict[str, int], book: KernelBook, registry: Registry) -> None:
        self.options = options
        self.ports = ports
        self.book = book
        self.registry = registry

    def txt(self) -> dict[str, str]:
        """The zeroconf TXT strings (read again every refresh)."""
        options, config = self.options, self.options.config
        return summary_txt(
            fingerprint=options.keys.fingerprint,
            events_port=self.ports["events"],
            key_port=self.ports["key"],
            mode=options.mode,
            kernels=self.book.count(),
            description=config.discovery.description,
            transport=config.kernels.transport,
            placements=placement_txt(config.slurm),
        )

    def status(self) -> dict[str, Any]:
        """Extra fields of each ``host_status`` event."""
        return {"name": self.options.name, "workers": len(self.registry.workers)}


def compose(options: BrokerOptions, resources: contextlib.ExitStack) -> Parts:
    """Build every part in dependency order; what must be closed goes on *resources* as it is made."""
    core = _core(options, resources)
    if not become_subreaper():
        log.warning("not a child subreaper: kernels whose worker died are reaped by init, if at all")
    account = edge_account(options.mode, options.config.server.edge_user)  # a bad edge_user stops us before any bind
    edge_policy = EdgePolicy()
    _start_zap(core, options.config, edge_policy, resources)
    wiring = _bind(core, options, edge_policy, resources)
    edge = EdgeKeeper(
        EdgeSpec(edge_credentials(options.config, options.keys, wiring.listeners, wiring.link_port), account),
        on_spawn=edge_policy.expect,
    )
    return _serving(options, core, wiring, _keepers(options, core, wiring, edge))


def _keepers(options: BrokerOptions, core: Core, wiring: Wiring, edge: EdgeKeeper) -> Keepers:
    config = options.config
    supervisor = Supervisor(
        endpoint=f"tcp://127.0.0.1:{wiring.backend_port}",
        server_key=options.keys.public,
        heartbeat_interval=config.workers.heartbeat_interval,
        log_level=config.server.log_level,
        backoff_max=config.workers.restart_backoff_max,
        expect=core.registry.expect,
    )
    cap = record_cap(config.kernels.max_per_user, config.kernels.max_per_host)
    book = KernelBook(core.state, cap, supervised=OwnChildren(supervisor, edge).supervises)
    summary = HostSummary(options, wiring.ports, book, core.registry)
    announcer = _announcer(options, wiring.ports["control"], summary)
    kernels = KernelService(
        book,
        core.registry,
        config.kernels,
        sealer=ConnectionSealer(core.sessions, options.keys),
        changed=announcer.refresh_soon if announcer is not None else None,
    )
    events = EventPublisher(wiring.link.events, core.wire)
    return Keepers(events, supervisor, edge, kernels, summary, announcer)


def _serving(options: BrokerOptions, core: Core, wiring: Wiring, keepers: Keepers) -> Parts:
    config, auth = options.config, options.config.auth
    replies = Replies(
        wiring.link, core.wire, sessions=core.sessions, limiter=core.limiter, session_lifetime=auth.session_lifetime
    )
    router = WorkerRouter(
        wiring.backend,
        core.registry,
        config.workers,
        answer=replies.answer,
        publish=keepers.events.publish,
        supervisor=keepers.supervisor,
        kernels=keepers.kernels,
    )
    accounts = AccountChecks(
        AccountSchedule(auth.account_recheck),
        sessions=core.sessions,
        registry=core.registry,
        submit=router.submit,
        answer=replies.answer,
    )
    specs = pool_specs(config, str(options.config_dir / "authorized_keys.d"), options.mode == "user")
    starter = WorkerStarter(config, keepers.supervisor, router, accounts)
    control = ControlHandler(
        wiring.link,
        core.wire,
        replies,
        _facts(options, wiring.ports, specs),
        config.server,
        registry=core.registry,
        submit=starter.submit,
        admission=Admission(config.envs, keepers.kernels).checks(),
        services=services(specs),
        sessions=core.sessions,
        limiter=core.limiter,
        permit_empty_passwords=auth.permit_empty_passwords,
    )
    guard, threshold = wiring.guard, config.workers.flood_threshold
    cut_response = CutResponse(wiring.cuts, guard, router, threshold) if guard is not None else None
    key_server = KeyServer(options.keys.public, _key_info(options))
    return Parts(core, wiring, keepers, replies, router, accounts, starter, control, cut_response, key_server, specs)


def _core(options: BrokerOptions, resources: contextlib.ExitStack) -> Core:
    ctx = zmq.asyncio.Context()
    resources.callback(ctx.destroy, linger=LINGER_MS)
    state = open_state(options.state_dir)
    resources.callback(state.close)
    auth = options.config.auth
    limiter = LoginLimiter(
        base_delay=auth.failure_delay,
        max_failures=auth.max_failures,
        lockout=auth.lockout,
        per_address_inflight=auth.pool_size - 1,  # one address never holds the whole auth pool
    )
    return Core(ctx, Registry(), protocol.Wire(username="ssd"), SessionStore(state), limiter, state)


def _start_zap(core: Core, config: Config, edge_policy: EdgePolicy, resources: contextlib.ExitStack) -> None:
    """ZAP for workers and the edge (clients' handshakes, and their throttle, are the edge's)."""
    throttle = ConnectionThrottle(config.auth.connection_burst, config.auth.connection_rate)
    zap = Authenticator(core.ctx, log=logging.getLogger("ssd.zap"), throttle=throttle)
    zap.start()  # before any bind: without a handler libzmq admits every key
    resources.callback(zap.stop)
    zap.configure_curve_callback(WORKER_DOMAIN, WorkerPolicy(core.registry.is_expected))
    zap.configure_curve_callback(EDGE_DOMAIN, edge_policy)


def _bind(core: Core, options: BrokerOptions, edge_policy: EdgePolicy, resources: contextlib.ExitStack) -> Wiring:
    """The backend (guarded before it is bound), the edge's link and the public listeners, bound."""
    server, secret = options.config.server, options.keys.secret
    backend = backend_socket(core.ctx, secret, server)
    cuts: asyncio.Queue[Cut] = asyncio.Queue()
    guard = backend_guard(core.ctx, backend, options.config.workers.flood_threshold, cuts)
    if guard is not None:
        resources.callback(guard.stop)
    link = link_socket(core.ctx, secret, server)
    config = options.config
    listeners = listen_public(server.bind, (server.port, config.events_port, config.key_port))
    resources.callback(close_listeners, listeners)
    ports = {name: sock.getsockname()[1] for name, sock in listeners.items()}
    backend_port, link_port = bind_loopback(backend), bind_loopback(link)
    return Wiring(listeners, ports, backend, backend_port, EdgeLink(link, edge_policy), link_port, cuts, guard)


class OwnChildren:
    """The processes the broker waits for itself (its workers and the edge): the kernel book never reaps them."""

    def __init__(self, supervisor: Supervisor, edge: EdgeKeeper) -> None:
        self.supervisor = supervisor
        self.edge = edge

    def supervises(self, pid: int) -> bool:
        """Whether *pid* is a running worker or the running edge."""
        return self.edge.pid == pid or self.supervisor.supervises(pid)


def _announcer(options: BrokerOptions, control_port: int, summary: HostSummary) -> Announcer | None:
    """The zeroconf announcer (not running yet), unless discovery.announce is off."""
    discovery = options.config.discovery
    if not discovery.announce:
        return None
    return Announcer(
        name=options.name,
        port=control_port,
        summary=summary.txt,
        interfaces=discovery.interfaces,
        bind=options.config.server.bind,
        refresh_interval=discovery.refresh_interval,
        txt_min_interval=discovery.txt_min_interval,
        host_tag=options.keys.fingerprint.removeprefix("SHA256:")[:8],
    )


def _facts(options: BrokerOptions, ports: dict[str, int], specs: list[WorkerSpec]) -> ServerFacts:
    return ServerFacts(
        name=options.name,
        mode=options.mode,
        fingerprint=options.keys.fingerprint,
        public_key=options.keys.public.decode(),
        control_port=ports["control"],
        events_port=ports["events"],
        key_port=ports["key"],
        started=time.time(),
        capabilities=_capabilities(services(specs)),
        kernel_transport=options.config.kernels.transport,
        placements=offered(options.config.slurm),
        slurm_partitions=tuple(options.config.slurm.partitions),
        slurm=slurm_offer(options.config.slurm),
    )


def _capabilities(served: set[str]) -> tuple[str, ...]:
    families = []
    for route in ROUTES.values():
        if route.service is None or route.service in served:
            families.append(route.msg_type.removesuffix("_request"))
    return tuple(families)


def _key_info(options: BrokerOptions) -> dict[str, str]:
    info = {"name": options.name, "fingerprint": options.keys.fingerprint}
    if options.certificate:  # for clients that verify it against a CA file (ssd.certs)
        info["certificate"] = options.certificate
    return info

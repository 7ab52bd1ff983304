"""A host under load, for tests/scale and benchmarks/bench_scale.py: real users logged in by PAM to a
system-mode daemon, Spyder and Jupyter kernels started through it, each one run through its CURVE relay,
and what /proc says of the daemon's processes (threads, descriptors, resident memory).
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import resource
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import zmq
from envfixtures import conda_copy, kernel_venv, list_in_environments_txt, public_dir
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.connect import KernelConnectionInfo
from support.daemon import Daemon, new_client
from support.eventually import eventually
from support.procnet import tcp_listeners
from users import User, chown_tree, login, start_system_daemon, stop_and_audit, users

from scale.procusage import MIB, Usage, children_of, edge_of, unit_nofile, usage
from ssd.client import AsyncClient, Client
from ssd.kernels.relay import Relay, RelayGate, new_relay_keys
from ssd.kernels.relayhost import relay_context
from ssd.kernels.relayloop import RelayLoop
from ssd.replies import KernelStartReply

__all__ = [
    "ENV",
    "KINDS",
    "Kernel",
    "Member",
    "ScaleHost",
    "Usage",
    "burst_starts",
    "execute",
    "relay_share",
    "scale_host",
    "unit_nofile",
    "usage",
]

ENV = "scale"
KINDS = ("ipykernel", "spyder")  # mixed: the n-th kernel of a run is KINDS[n % 2]
START_TIMEOUT = 180.0  # many kernels importing at once on two shared cores
PROBE_RELAYS = 8  # relays opened in this process to measure one relay's cost
CEILING_CAP = 200  # relays at most while looking for libzmq's limit


@dataclass(frozen=True)
class Kernel:
    """A kernel started through the daemon, and how a client reaches it through the relay."""

    kernel_id: str
    kind: str
    relay: dict[str, Any]
    own_file: str  # the kernel's own connection file on the server (ipc endpoints)


@dataclass
class Member:
    """A user logged in with a password, their kernels, and their kernel worker (once it runs)."""

    user: User
    client: Client
    kernels: list[Kernel] = field(default_factory=list)
    worker: int = 0  # pid of the user's kernel worker


def execute(relay: dict[str, Any], timeout: float = 60.0) -> None:
    """Run ``1+1`` in the kernel through its relay (CURVE, as jupyter_client 8.9+ connects) and check the 2."""
    kc = BlockingKernelClient()
    kc.load_connection_info(cast(KernelConnectionInfo, relay))
    kc.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
    try:
        msg_id = kc.execute("1+1", store_history=False, user_expressions={"r": "1+1"})
        while True:
            try:
                reply = kc.get_shell_msg(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no execute_reply through the relay on port {relay['shell_port']}") from None
            if reply["parent_header"].get("msg_id") == msg_id:
                break
    finally:
        kc.stop_channels()
    content = reply["content"]
    assert content["status"] == "ok", content
    assert content["user_expressions"]["r"]["data"]["text/plain"] == "2", content


class ScaleHost:
    """The daemon, its members and the kernels they run; starts and stops kernels, finds the processes."""

    def __init__(self, daemon: Daemon, members: list[Member], fresh: dict[str, Usage]) -> None:
        self.daemon = daemon
        self.members = members
        self.fresh = fresh  # the broker and the edge before anyone logged in
        self.started = 0  # kernels started so far (kinds alternate over the run)

    @property
    def broker(self) -> int:
        """The broker: the daemon's own process."""
        return self.daemon.process.pid

    def children(self) -> dict[int, tuple[int, str]]:
        """The broker's child processes: pid to (uid, command line)."""
        return children_of(self.broker)

    @property
    def edge(self) -> int:
        """The edge process (pre-login containment)."""
        return edge_of(self.broker)

    def workers(self) -> list[int]:
        """Every kernel worker found so far."""
        return [member.worker for member in self.members if member.worker]

    def start(self, member: Member, kind: str | None = None) -> Kernel:
        """Start a kernel for *member* (the next kind of the alternation unless given); find its worker."""
        kind = kind or KINDS[self.started % len(KINDS)]
        self.started += 1
        return self.adopt(member, member.client.kernel_start(ENV, kind, timeout=START_TIMEOUT))

    def adopt(self, member: Member, reply: KernelStartReply) -> Kernel:
        """Count a started kernel as *member*'s (stopped with the others); find the member's worker."""
        relay = member.client.connection_info(reply.connection)
        kernel = Kernel(reply.kernel.kernel_id, reply.kernel.kind, relay, reply.connection_file)
        member.kernels.append(kernel)
        if not member.worker:
            member.worker = self._worker_of(member.user, int(kernel.relay["shell_port"]))
        return kernel

    def stop(self, member: Member, kernel: Kernel) -> None:
        """Shut a kernel down through the daemon."""
        member.client.kernel_shutdown(kernel.kernel_id)
        member.kernels.remove(kernel)

    def _worker_of(self, user: User, relay_port: int) -> int:
        """The user's kernel worker: the broker's child of that uid that listens on the kernel's relay port."""
        for pid, (uid, cmd) in self.children().items():
            if uid == user.uid and "ssd.workers" in cmd and relay_port in tcp_listeners(pid):
                return pid
        raise AssertionError(f"no kernel worker of {user.name} listens on relay port {relay_port}")

    def kernels(self) -> Iterator[Kernel]:
        """Every running kernel of every member."""
        for member in self.members:
            yield from member.kernels

    def execute_all(self) -> int:
        """Run 1+1 in every kernel through its relay; the number of kernels."""
        count = 0
        for kernel in self.kernels():
            execute(kernel.relay)
            count += 1
        return count

    def lost_workers(self) -> list[str]:
        """Members whose kernel worker is no longer the one found first (it died or was restarted)."""
        alive = self.children()
        return [m.user.name for m in self.members if m.worker and m.worker not in alive]

    def pids(self) -> dict[str, int]:
        """The processes measured: the broker, the edge and every kernel worker found so far."""
        found = {"broker": self.broker, "edge": self.edge}
        found.update({f"worker {m.user.name}": m.worker for m in self.members if m.worker})
        return found

    def sample(self) -> dict[str, Usage]:
        """/proc's view of every process measured."""
        return {name: usage(pid) for name, pid in self.pids().items()}

    def churn_round(self) -> int:
        """One kernel started, run through its relay and stopped for each member; the number of starts."""
        for member in self.members:
            kernel = self.start(member)
            execute(kernel.relay)
            self.stop(member, kernel)
        return len(self.members)

    def stop_all(self) -> None:
        """Shut down every kernel still running."""
        for member in self.members:
            for kernel in list(member.kernels):
                self.stop(member, kernel)


def burst_starts(host: ScaleHost, plan: list[int]) -> list[KernelStartReply | BaseException]:
    """*plan[n]* kernel starts for the n-th member, all sent at once, each member's on a second connection with
    its (logged-in) key while the first stays open (a Spyder and an ssd-ctl of one person): replies or errors."""
    return asyncio.run(_burst_starts(host, plan))


async def _burst_starts(host: ScaleHost, plan: list[int]) -> list[KernelStartReply | BaseException]:
    clients = []
    for member in host.members[: len(plan)]:
        a = member.client.aclient
        clients.append(AsyncClient(host.daemon.host, identity=a.identity, known_hosts=a.known_hosts, timeout=60))
    try:
        for client in clients:
            await client.connect()
        starts = [
            client.kernel_start(ENV, KINDS[n % 2], timeout=START_TIMEOUT)
            for client, count in zip(clients, plan, strict=True)
            for n in range(count)
        ]
        return await asyncio.gather(*starts, return_exceptions=True)
    finally:
        for client in clients:
            await client.close()


def settled(pid: int, before: Usage, slack: Usage, what: str, timeout: float = 30.0) -> Usage:
    """Wait until *pid*'s threads, descriptors and memory are back within *slack* of *before*; return them.

    libzmq closes a socket's descriptors in its reaper thread after the close call returns: wait, never sleep.
    """

    def back() -> Usage:
        now = usage(pid)
        assert now.threads <= before.threads + slack.threads, f"{what}: threads {before.threads} -> {now.threads}"
        assert now.fds <= before.fds + slack.fds, f"{what}: descriptors {before.fds} -> {now.fds} {now.fd_kinds}"
        assert now.rss <= before.rss + slack.rss, f"{what}: RSS {before.rss >> 10} -> {now.rss >> 10} KiB"
        return now

    return eventually(back, f"{what} back to its size before the churn", timeout=timeout)


def relay_share(kernel: Kernel, design: type[Relay] = Relay) -> dict[str, Any]:
    """One relay's threads, fds and RSS, and how many relays (up to CEILING_CAP) a kernel worker's relay context
    holds, in this process; *design* may be a baseline built on Relay (bench_scale's threaded one)."""
    info = json.loads(Path(kernel.own_file).read_text())  # its ipc endpoints: root may connect
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # room for CEILING_CAP relays (32 descriptors each)
    ctx = relay_context()  # the kernel worker's own: its socket table sized from the descriptor limit
    gate = RelayGate(ctx)
    loop = RelayLoop(ctx)
    relays: list[Relay] = []

    def open_one() -> None:
        keys, domain = new_relay_keys(), f"probe{len(relays)}"
        gate.admit(domain, keys["curve_publickey"])
        relay = design(loop, info, "127.0.0.1", keys, domain=domain)
        relay.start()
        relays.append(relay)

    try:
        open_one()  # the context's I/O and reaper threads start with its first socket
        before = usage(os.getpid())
        for _ in range(PROBE_RELAYS):
            open_one()
        after = usage(os.getpid())
        refusal = ""
        while len(relays) < CEILING_CAP:
            try:
                open_one()
            except zmq.ZMQError as exc:
                refusal = str(exc)
                break
        return {
            "threads": (after.threads - before.threads) / PROBE_RELAYS,
            "fds": (after.fds - before.fds) / PROBE_RELAYS,
            "fd_kinds": {k: (after.fd_kinds.get(k, 0) - v) / PROBE_RELAYS for k, v in before.fd_kinds.items()},
            "rss_mib": (after.rss - before.rss) / MIB / PROBE_RELAYS,
            "relays_per_context": len(relays),
            "refusal": refusal,
            "max_sockets": ctx.get(zmq.MAX_SOCKETS),
        }
    finally:
        for relay in relays:
            relay.stop()
        loop.stop()
        gate.stop()
        ctx.term()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _shared_env(where: Path) -> Path:
    """One copy of the cached kernel venv as a conda-style environment every test user may run."""
    prefix = conda_copy(kernel_venv(), where / ENV)
    subprocess.run(["chmod", "-R", "a+rX", str(where)], check=True)
    return prefix


@contextmanager
def scale_host(tmp: Path, count: int, *, per_user: int, per_host: int, spares: int = 0) -> Iterator[ScaleHost]:
    """*count* real users logged in to a system-mode daemon with these kernel limits and *spares* per
    (environment, kind) (default none: cold starts, what bench_scale measures), one shared environment; every
    kernel shut down, the daemon stopped (exit 0) and audited, the users removed afterwards."""
    limits = {
        "SSD_KERNELS_MAX_PER_USER": str(per_user),
        "SSD_KERNELS_MAX_PER_HOST": str(per_host),
        "SSD_KERNELS_START_TIMEOUT": str(START_TIMEOUT),
        "SSD_KERNELS_STOP_ON_EXIT": "true",
        "SSD_KERNELS_SPARES": str(spares),
    }
    with ExitStack() as stack:
        made = stack.enter_context(users(count))
        prefix = _shared_env(stack.enter_context(public_dir()))
        for user in made:
            list_in_environments_txt(user.home, prefix)
            chown_tree(user.home / ".conda", user)
        daemon = start_system_daemon(tmp, extra_env=limits)
        stack.callback(stop_and_audit, daemon)
        fresh = {"broker": usage(daemon.process.pid), "edge": usage(edge_of(daemon.process.pid))}
        members = []
        for user in made:
            client = new_client(daemon, tmp / f"client-{user.name}", timeout=60)
            stack.callback(client.close)
            client.connect()
            login(client, user.name, user.password)
            members.append(Member(user, client))
        host = ScaleHost(daemon, members, fresh)
        try:
            yield host
        finally:
            host.stop_all()

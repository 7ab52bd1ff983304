"""Helpers of the kernel tests: a runnable environment for a user (and one whose kernels wait at a gate),
two users logged in to a daemon with given limits, code run through a real jupyter_client, and a tap on the
daemon's events socket that waits with a timeout.
"""

from __future__ import annotations

import ast
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import zmq
from envfixtures import conda_copy, kernel_venv, list_in_environments_txt, public_dir
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.connect import KernelConnectionInfo
from support.daemon import Daemon, new_client
from users import User, chown_tree, login, system_daemon, users

from ssd.client import Client
from ssd.protocol import BadMessage, Wire


def user_client(daemon: Daemon, tmp: Path, user: User) -> Client:
    """A client of *user*, logged in with their password (its folder: TMP/client-USER)."""
    client = new_client(daemon, tmp / f"client-{user.name}", timeout=60)
    client.connect()
    login(client, user.name, user.password)
    return client


def stop_all(*clients: Client) -> None:
    """Stop every kernel of each client's user, then close the clients."""
    for client in clients:
        for kernel in client.kernel_list():
            client.kernel_shutdown(kernel.kernel_id)
        client.close()


def give_env(user: User, where: Path, name: str = "sci") -> Path:
    """A conda-style copy of the kernel venv owned by *user*, listed in their environments.txt."""
    home = where / user.name
    home.mkdir(mode=0o755, exist_ok=True)
    prefix = conda_copy(kernel_venv(), home / name)
    chown_tree(prefix, user)
    list_in_environments_txt(user.home, prefix)
    chown_tree(user.home / ".conda", user)
    return prefix


def gate_env(user: User, where: Path, gate: Path, name: str = "gated") -> Path:
    """give_env's environment in which every Python (so every kernel) waits at start-up until *gate* exists:
    a kernel held between its spawn (its record sent) and its kernel_info reply for as long as a test needs."""
    prefix = give_env(user, where, name)
    (site,) = prefix.glob("lib/python*/site-packages")
    wait = f"[time.sleep(0.05) for _ in iter(lambda: os.path.exists({str(gate)!r}), True)]"
    (site / "zz_ssd_test_gate.pth").write_text(f"import os, time; {wait}\n")
    chown_tree(site, user)
    return prefix


@dataclass(frozen=True)
class TwoUsers:
    """alice and bob, real users with an environment "sci" each, logged in to one system-mode daemon."""

    alice: User
    bob: User
    a: Client
    b: Client
    daemon: Daemon
    where: Path  # the public folder of their environments


@contextmanager
def two_users(tmp: Path, settings: dict[str, str] | None = None) -> Iterator[TwoUsers]:
    """alice and bob logged in to a daemon run with *settings* (``SSD_*`` variables: limits, spares); their
    kernels stopped, the daemon stopped and audited and the users removed afterwards."""
    with users(2) as (alice, bob), public_dir() as where, system_daemon(tmp, settings) as daemon:
        give_env(alice, where)
        give_env(bob, where)
        a, b = user_client(daemon, tmp, alice), user_client(daemon, tmp, bob)
        try:
            yield TwoUsers(alice, bob, a, b, daemon, where)
        finally:
            stop_all(a, b)


HEARTBEAT_DEADLINE = 5.0  # seconds


@contextmanager
def kernel_client(info: dict[str, Any], timeout: float = 30.0) -> Iterator[BlockingKernelClient]:
    """A jupyter_client BlockingKernelClient on *info*, ready, stopped afterwards."""
    client = BlockingKernelClient()
    client.load_connection_info(cast(KernelConnectionInfo, info))
    # jupyter_client calls a kernel dead after one heartbeat unanswered for 1 s, even while it waits for
    # kernel_info: on a loaded 2-core machine, through a relay or two, that is a race these tests do not test.
    client.hb_channel.time_to_dead = HEARTBEAT_DEADLINE
    client.start_channels()
    try:
        client.wait_for_ready(timeout=timeout)
        yield client
    finally:
        client.stop_channels()


def run(client: BlockingKernelClient, code: str, timeout: float = 30.0) -> tuple[dict[str, Any], str]:
    """Execute *code*; return the execute_reply content and everything it printed."""
    printed: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            printed.append(msg["content"]["text"])

    reply = client.execute_interactive(code, timeout=timeout, output_hook=hook)
    return reply["content"], "".join(printed)


def evaluate(info: dict[str, Any], expression: str) -> Any:
    """Print repr(expression) in the kernel and read it back as a Python value."""
    with kernel_client(info) as client:
        reply, printed = run(client, f"import os, sys\nprint(repr({expression}))")
    assert reply["status"] == "ok", reply
    return ast.literal_eval(printed.strip())


class EventTap:
    """A CURVE SUB socket on the daemon's events port, read with timeouts."""

    def __init__(self, client: Client, topic: str = "") -> None:
        aclient = client.aclient
        assert aclient.server_key is not None
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.linger = 0
        self.sock.curve_serverkey = aclient.server_key
        self.sock.curve_publickey = aclient.identity.public
        self.sock.curve_secretkey = aclient.identity.secret
        self.sock.subscribe(topic.encode())
        self.sock.subscribe(b"host_status")  # heard within status_interval: proof the subscription is live
        self.sock.connect(aclient.spec.endpoint(int(client.server_info().events_port)))
        self.wire = Wire(username="test")
        self.seen: list[tuple[str, str, dict[str, Any]]] = []
        self.wait_for(lambda topic, kind, content: kind == "host_status")

    def wait_for(self, wanted: Callable[[str, str, dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
        """Return the content of the first event (from now on, or already seen) that *wanted* accepts."""
        for seen in self.seen:
            if wanted(*seen):
                self.seen.remove(seen)
                return seen[2]
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not self.sock.poll(int(left * 1000)):
                break
            try:
                msg = self.wire.parse(self.sock.recv_multipart(), has_idents=True)
            except BadMessage:
                continue
            topic = msg.idents[0].decode() if msg.idents else ""
            content = dict(msg.content)
            if wanted(topic, msg.msg_type, content):
                return content
            if msg.msg_type != "host_status":
                self.seen.append((topic, msg.msg_type, msg.content))
        raise AssertionError(f"no such event within {timeout} s; saw {[(t, k) for t, k, _ in self.seen]}")

    def kernel_state(self, kernel_id: str, state: str, timeout: float = 20.0) -> dict[str, Any]:
        """Wait for a kernel_state event of *kernel_id* with *state*."""
        return self.wait_for(
            lambda t, k, c: k == "kernel_state" and c.get("kernel_id") == kernel_id and c.get("state") == state,
            timeout,
        )

    def close(self) -> None:
        """Close the socket and its context."""
        self.sock.close(0)
        self.ctx.term()


def process_state(pid: int) -> str | None:
    """The state letter of *pid* (None when no such process; Z for a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2]


def owner_and_mode(path: str) -> tuple[int, int]:
    """(uid, permission bits) of a file."""
    st = os.stat(path)
    return st.st_uid, st.st_mode & 0o777

"""Worker supervision on a real daemon: routing, crashes, silence, limits, shutdown, impostors."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest
import zmq
from support.daemon import Daemon, start_daemon
from support.eventually import eventually
from zmq.utils.monitor import parse_monitor_message

from ssd.protocol import Wire
from ssd.workers import wire

T = TypeVar("T")
WIRE = Wire(username="test")
DELAY = 10.0  # seconds an in-flight echo is held while its worker is killed


class Conn:
    """A CURVE DEALER on the control port with its own client key; replies are matched by msg_id."""

    def __init__(self, sock: zmq.Socket[bytes], daemon: Daemon) -> None:
        self.sock = sock
        self.public_key, secret_key = zmq.curve_keypair()
        self.sock.curve_publickey, self.sock.curve_secretkey = self.public_key, secret_key
        self.sock.curve_serverkey = str(daemon.info["public_key"]).encode()
        self.sock.connect(f"tcp://127.0.0.1:{daemon.port}")
        self.early: dict[str, dict[str, Any]] = {}  # replies read while waiting for another one

    def send(self, msg_type: str, content: dict[str, Any]) -> str:
        """Send a request; return its msg_id."""
        msg_id, frames = WIRE.serialize(msg_type, content)
        self.sock.send_multipart(frames)
        return msg_id

    def reply(self, msg_id: str, timeout: float) -> dict[str, Any] | None:
        """The content of the reply to *msg_id*, or None if none came within *timeout* seconds."""
        deadline = time.monotonic() + timeout
        while msg_id not in self.early:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(int(left * 1000)):
                return None
            msg = WIRE.parse(self.sock.recv_multipart(), has_idents=True)
            self.early[str(msg.parent_header["msg_id"])] = msg.content
        return self.early.pop(msg_id)

    def call(self, msg_type: str, content: dict[str, Any], timeout: float = 15.0) -> dict[str, Any]:
        """Send a request and return its reply content; fail the test if none comes."""
        reply = self.reply(self.send(msg_type, content), timeout)
        assert reply is not None, f"no reply to {msg_type} within {timeout}s"
        return reply

    def login(self, daemon: Daemon) -> None:
        """Authorize this key for the daemon's user and log in with it (echo_request needs a login)."""
        daemon.authorize(self.public_key)
        reply = self.call("login_request", {"username": pwd.getpwuid(os.geteuid()).pw_name})
        assert reply["status"] == "ok", reply


class Sockets:
    """Every socket a test opens, in one context, all closed by close()."""

    def __init__(self) -> None:
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.opened: list[zmq.Socket[bytes]] = []

    def socket(self, kind: int) -> zmq.Socket[bytes]:
        """A new socket with linger 0."""
        sock = self.ctx.socket(kind)
        sock.linger = 0
        self.opened.append(sock)
        return sock

    def conn(self, daemon: Daemon) -> Conn:
        """A new client connection with a fresh key, logged in as the daemon's user."""
        conn = Conn(self.socket(zmq.DEALER), daemon)
        conn.login(daemon)
        return conn

    def close(self) -> None:
        """Close every socket and the context."""
        for sock in self.opened:
            sock.close(linger=0)
        self.ctx.destroy(linger=0)


@pytest.fixture
def sockets() -> Iterator[Sockets]:
    """The test's sockets, closed afterwards."""
    made = Sockets()
    yield made
    made.close()


@contextlib.contextmanager
def running(tmp: Path, diag: bool = True, **env: str) -> Iterator[Daemon]:
    """A daemon with SSD_* settings *env*, stopped afterwards; it must exit 0."""
    daemon = start_daemon(tmp, extra_env={**({"SSD_WORKERS_DIAG": "true"} if diag else {}), **env})
    try:
        yield daemon
    finally:
        daemon.stop_and_check()


def worker_pids(daemon: Daemon, service: str = "diag") -> set[int]:
    """Pids of the daemon's live worker processes of *service* (not the auth pool, say)."""
    started = {int(pid) for pid in re.findall(rf"\(service {re.escape(service)}, pid (\d+)\)", daemon.log())}
    children = psutil.Process(daemon.process.pid).children()
    return {
        c.pid
        for c in children
        if c.pid in started and "ssd.workers" in c.cmdline() and c.status() != psutil.STATUS_ZOMBIE
    }


def hold(conn: Conn, delay: float, worker: int) -> str:
    """Send an echo held *delay* seconds and return its msg_id once *worker* holds it.

    A quick echo sent after it comes back from the same worker: one connection, dispatched in order.
    """
    msg_id = conn.send("echo_request", {"data": "held", "delay": delay})
    assert conn.call("echo_request", {"data": "behind it"})["pid"] == worker
    return msg_id


def assert_error(reply: dict[str, Any] | None, ename: str) -> dict[str, Any]:
    """An error reply with code *ename* and a readable message; return it."""
    assert reply is not None, f"no {ename} reply"
    assert reply["status"] == "error", reply
    assert reply["ename"] == ename, reply
    assert reply["evalue"].strip()
    assert "Traceback" not in reply["evalue"]
    return reply


def assert_ok(reply: dict[str, Any] | None) -> dict[str, Any]:
    """An ok reply; return it."""
    assert reply is not None, "no reply"
    assert reply["status"] == "ok", reply
    return reply


def test_echo_goes_through_a_separate_worker_process(daemon: Daemon, sockets: Sockets) -> None:
    """echo_request returns the data and the pid of a worker that is a child of the daemon."""
    reply = sockets.conn(daemon).call("echo_request", {"data": "round trip ✓"})
    assert reply["status"] == "ok", reply
    assert reply["data"] == "round trip ✓"
    pid = reply["pid"]
    assert pid not in (os.getpid(), daemon.process.pid)
    assert psutil.Process(pid).ppid() == daemon.process.pid
    assert pid in worker_pids(daemon)


def test_killed_worker_fails_inflight_request_and_is_restarted(tmp_path: Path, sockets: Sockets) -> None:
    """SIGKILL of the worker answers its request worker_lost at once; a new worker serves the next one."""
    with running(tmp_path, SSD_WORKERS_SERVICE_WAIT="10") as daemon:
        conn = sockets.conn(daemon)
        old = conn.call("echo_request", {"data": "first"})["pid"]
        msg_id = hold(conn, DELAY, old)
        killed_at = time.monotonic()
        os.kill(old, signal.SIGKILL)
        reply = conn.reply(msg_id, timeout=DELAY - 0.5)
        took = time.monotonic() - killed_at
        assert_error(reply, "worker_lost")
        assert took < DELAY, f"worker_lost came after {took:.2f}s"
        new = eventually(lambda: next(iter(worker_pids(daemon) - {old}), None), "a new worker", timeout=15)
        second = conn.call("echo_request", {"data": "second"})
        assert second["status"] == "ok", second
        assert second["pid"] == new != old
        assert psutil.Process(new).ppid() == daemon.process.pid
        log = daemon.log()
        assert "killed by SIGKILL" in log
        assert "missed" not in log, "the crash was noticed by heartbeat expiry, not by the supervisor"


def test_silent_worker_is_declared_dead_killed_and_restarted(tmp_path: Path, sockets: Sockets) -> None:
    """A SIGSTOPped worker misses heartbeats: its request gets worker_lost, it is SIGKILLed and replaced."""
    with running(tmp_path, SSD_WORKERS_HEARTBEAT_INTERVAL="0.2", SSD_WORKERS_SERVICE_WAIT="10") as daemon:
        conn = sockets.conn(daemon)
        old_pid = conn.call("echo_request", {})["pid"]
        old = psutil.Process(old_pid)
        msg_id = hold(conn, DELAY, old_pid)
        old.suspend()
        try:
            reply = conn.reply(msg_id, timeout=DELAY - 0.5)
            assert_error(reply, "worker_lost")
            old.wait(10)  # SIGKILLed by the supervisor, reaped by the daemon
            assert not old.is_running()
        finally:
            with contextlib.suppress(psutil.NoSuchProcess):
                old.resume()
        new = eventually(lambda: next(iter(worker_pids(daemon) - {old_pid}), None), "a new worker", timeout=15)
        second = conn.call("echo_request", {"data": "again"})
        assert second["status"] == "ok", second
        assert second["pid"] == new != old_pid
        assert psutil.Process(new).ppid() == daemon.process.pid
        log = daemon.log()
        assert f"killing pid {old_pid}" in log
        assert "killed by SIGKILL" in log


def test_disabled_service_is_unavailable_at_once(tmp_path: Path, sockets: Sockets) -> None:
    """Without the diag worker, echo_request is refused service_unavailable without waiting."""
    with running(tmp_path, diag=False, SSD_WORKERS_SERVICE_WAIT="30") as daemon:
        assert worker_pids(daemon) == set()
        conn = sockets.conn(daemon)
        reply = assert_error(conn.reply(conn.send("echo_request", {"data": "x"}), timeout=10), "service_unavailable")
        assert "not enabled" in reply["evalue"]


def test_too_many_requests_per_client_key(tmp_path: Path, sockets: Sockets) -> None:
    """The third concurrent request of one key is refused; another key and later requests are served."""
    with running(tmp_path, SSD_SERVER_MAX_INFLIGHT_PER_CLIENT="2") as daemon:
        busy, other = sockets.conn(daemon), sockets.conn(daemon)
        assert busy.call("echo_request", {})["status"] == "ok"  # the worker is registered
        ids = [busy.send("echo_request", {"data": str(i), "delay": 2}) for i in range(3)]
        assert_error(busy.reply(ids[2], timeout=10), "too_many_requests")
        assert busy.early == {}, "the refusal should come before the held requests finish"
        assert other.call("echo_request", {"data": "other"})["data"] == "other"
        for i, msg_id in enumerate(ids[:2]):
            assert assert_ok(busy.reply(msg_id, timeout=10))["data"] == str(i)
        assert busy.call("echo_request", {"data": "later"})["status"] == "ok"


def test_shutdown_answers_inflight_request_and_leaves_no_process(tmp_path: Path, sockets: Sockets) -> None:
    """SIGTERM with a 30 s echo in flight: the client gets shutting_down, the daemon exits 0, the worker is gone."""
    daemon = start_daemon(tmp_path, extra_env={"SSD_WORKERS_DIAG": "true", "SSD_SERVER_SHUTDOWN_GRACE": "0.5"})
    try:
        conn = sockets.conn(daemon)
        worker = psutil.Process(conn.call("echo_request", {})["pid"])
        msg_id = hold(conn, 30, worker.pid)
        daemon.process.send_signal(signal.SIGTERM)
        assert_error(conn.reply(msg_id, timeout=15), "shutting_down")
        assert daemon.process.wait(15) == 0, daemon.log()
        assert not worker.is_running()
        assert not (daemon.state_dir / "daemon.json").exists()
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()


def backend_port(daemon: Daemon) -> int:
    """The daemon's unpublished worker port: its loopback LISTEN socket that is neither public nor the edge's link."""
    public = {int(str(daemon.info[f"{name}_port"])) for name in ("control", "events", "key")}
    broker = psutil.Process(daemon.process.pid)
    for child in broker.children():
        if "ssd.edge" in " ".join(child.cmdline()):
            public |= {c.raddr.port for c in child.net_connections(kind="tcp") if c.raddr}
    ports = {
        c.laddr.port
        for c in broker.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.ip == "127.0.0.1" and c.laddr.port not in public
    }
    assert len(ports) == 1, f"expected one backend port, found {ports}"
    return ports.pop()


def test_unknown_key_cannot_register_as_worker(daemon: Daemon, sockets: Sockets) -> None:
    """A DEALER with a fresh key is refused by ZAP on the backend and is never sent a request."""
    conn = sockets.conn(daemon)
    real = conn.call("echo_request", {})["pid"]
    rogue = sockets.socket(zmq.DEALER)
    rogue.curve_publickey, rogue.curve_secretkey = zmq.curve_keypair()
    rogue.curve_serverkey = str(daemon.info["public_key"]).encode()
    monitor = rogue.get_monitor_socket()
    sockets.opened.append(monitor)
    rogue.connect(f"tcp://127.0.0.1:{backend_port(daemon)}")
    ready = wire.Ready(service="diag", pid=os.getpid(), capacity=64)
    # Once ZAP has refused the handshake the DEALER has no pipe and a blocking send would hang the
    # test (a race with the refusal); the refusal is the point, so a send that cannot go is fine.
    with contextlib.suppress(zmq.Again):
        rogue.send_multipart([wire.TAG, wire.READY, wire.encode(ready)], flags=zmq.NOBLOCK)
    # Concurrent slow echoes: a registered rogue (idle, so least loaded) would be handed some.
    ids = [conn.send("echo_request", {"data": str(i), "delay": 0.3}) for i in range(4)]
    for msg_id in ids:
        assert assert_ok(conn.reply(msg_id, timeout=10))["pid"] == real
    assert not rogue.poll(1000), "the backend sent something to an unknown worker"
    events = set()
    while monitor.poll(0):
        events.add(parse_monitor_message(monitor.recv_multipart())["event"])
    assert zmq.EVENT_HANDSHAKE_SUCCEEDED not in events
    assert zmq.EVENT_HANDSHAKE_FAILED_AUTH in events, events
    assert "refused a backend connection from an unknown key" in daemon.log()

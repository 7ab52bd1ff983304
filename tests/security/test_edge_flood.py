"""Floods before login (issue 13, finding 1): one multipart message of 2-byte frames to each public port.

libzmq buffers a whole multipart message, about 64 bytes per frame, before
the application sees it. On the old daemon 60 MB of 2-byte frames to the key
port took the root broker past 2 GiB and every worker exited. Now the key port
is not ZeroMQ, and the CURVE sockets live in the edge process, whose flood
guard cuts the flooding connection (or which dies alone and is restarted).

Against a real system-mode daemon, while a logged-in user pings without pause,
an attacker process floods (a) the key port, (b) the control port and (c) the
events port with fresh CURVE keys. Each time the daemon's memory (the broker
and every descendant) may grow by at most 64 MiB, or else the edge alone was
restarted; every ping is answered; no worker is lost; a fresh login works
after.
"""

from __future__ import annotations

import contextlib
import json
import pwd
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from support.ci import require_root
from support.daemon import Daemon, new_client
from support.eventually import eventually
from support.memory import sampled_peak
from users import User, login, system_daemon, users

from ssd.client import Client

FLOODER = str(Path(__file__).with_name("flooder.py"))
FLOOD_BYTES = 60_000_000  # on the wire, as in the finding
CURVE_FRAME_WIRE = 37  # one 2-byte frame under CURVE, on the wire
MAX_GROWTH = 64 << 20
PING_TIMEOUT = 10.0  # per ping: liveness, not speed


def descendants(daemon: Daemon) -> list[psutil.Process]:
    """The broker and every process below it."""
    broker = psutil.Process(daemon.process.pid)
    return [broker, *broker.children(recursive=True)]


def total_rss(daemon: Daemon) -> int:
    """Resident memory of the broker and all its descendants."""
    total = 0
    for process in descendants(daemon):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total


def roles(daemon: Daemon) -> dict[str, set[int]]:
    """Pids by role: broker, edge, workers."""
    found: dict[str, set[int]] = {"broker": {daemon.process.pid}, "edge": set(), "workers": set()}
    for process in descendants(daemon)[1:]:
        try:
            line = " ".join(process.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "ssd.edge" in line:
            found["edge"].add(process.pid)
        elif "ssd.workers" in line:
            found["workers"].add(process.pid)
    return found


@dataclass
class Pinger:
    """A logged-in client that pings without pause on its own thread, recording each round trip."""

    client: Client
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (sent at, seconds)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """The thread."""
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                assert self.client.ping("flood").status == "ok"
            except Exception as exc:  # every failure is a finding, reported by the test
                self.failures.append(repr(exc))
                continue
            self.latencies.append((sent, time.monotonic() - sent))

    def answered_since(self, moment: float) -> bool:
        """Whether a ping sent after *moment* was answered."""
        return any(sent > moment for sent, _ in self.latencies[-50:])

    def stop(self) -> None:
        """Let the thread end after its current ping."""
        self._stop.set()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A system-mode daemon for this test."""
    require_root()
    with system_daemon(tmp_path) as made:
        yield made


@pytest.fixture
def user() -> Iterator[User]:
    """A real user who logs in with a password."""
    require_root()
    with users(1) as made:
        yield made[0]


def flood(daemon: Daemon, pinger: Pinger, argv: list[str]) -> tuple[int, dict[str, object]]:
    """Run one attacker process; return the daemon's memory growth and how the flood ended."""
    before = total_rss(daemon)
    with sampled_peak(lambda: total_rss(daemon), interval=0.01) as watched:
        attacker = subprocess.run(
            [sys.executable, FLOODER, *argv], capture_output=True, text=True, timeout=200, check=True
        )
        over = time.monotonic()
        # The daemon has swallowed the flood when it answers a ping sent after it.
        eventually(
            lambda: pinger.answered_since(over) or pinger.failures, "a ping answered after the flood", timeout=60
        )
    return watched.value - before, json.loads(attacker.stdout)


@pytest.mark.root
@pytest.mark.timeout(240)
def test_floods_before_login_cost_bounded_memory_and_nobody_else(daemon: Daemon, tmp_path: Path, user: User) -> None:
    """60 MB of 2-byte frames to the key, control and events ports: bounded memory, no worker lost, pings go on."""
    client = new_client(daemon, tmp_path / "pinger", timeout=PING_TIMEOUT)
    client.connect()
    login(client, user.name, user.password)
    eventually(lambda: roles(daemon)["workers"], "the auth workers")
    start = roles(daemon)
    pinger = Pinger(client)
    thread = threading.Thread(target=pinger.run)
    thread.start()
    key = str(daemon.info["public_key"])
    attacks = {
        "key port": ["raw", str(daemon.info["key_port"]), str(FLOOD_BYTES)],
        "control port": ["dealer", str(daemon.info["control_port"]), str(FLOOD_BYTES // CURVE_FRAME_WIRE), key],
        "events port": ["xsub", str(daemon.info["events_port"]), str(FLOOD_BYTES // CURVE_FRAME_WIRE), key],
    }
    results: dict[str, tuple[int, dict[str, object], dict[str, set[int]]]] = {}
    try:
        for name, argv in attacks.items():
            growth, outcome = flood(daemon, pinger, argv)
            results[name] = (growth, outcome, roles(daemon))
            print(f"{name}: daemon grew {growth / 2**20:.1f} MiB, attacker {outcome}")
    finally:
        pinger.stop()
        thread.join()
        client.close()
    seconds = sorted(latency for _, latency in pinger.latencies)
    print(
        f"{len(seconds)} pings during the floods: p50 {statistics.median(seconds) * 1000:.1f} ms, "
        f"p99 {seconds[int(len(seconds) * 0.99)] * 1000:.1f} ms, max {seconds[-1] * 1000:.1f} ms"
    )
    assert not pinger.failures, f"pings failed during the floods: {pinger.failures[:3]}"
    for name, (growth, outcome, after) in results.items():
        restarted = after["edge"] != start["edge"]
        assert growth <= MAX_GROWTH or restarted, f"{name}: the daemon grew {growth >> 20} MiB ({outcome})"
        assert after["broker"] == start["broker"], f"{name}: the broker changed"
        assert after["workers"] >= start["workers"], f"{name}: a worker was lost ({start} -> {after})"
    assert roles(daemon)["workers"] >= start["workers"], "an auth worker was lost"
    with new_client(daemon, tmp_path / "after") as fresh:
        assert login(fresh, user.name, user.password).user == user.name
    (edge,) = roles(daemon)["edge"]
    assert psutil.Process(edge).uids().real == pwd.getpwnam("nobody").pw_uid, "the edge is not unprivileged"


@pytest.mark.root
def test_a_killed_edge_is_replaced_and_its_clients_reconnect(daemon: Daemon, tmp_path: Path, user: User) -> None:
    """SIGKILL the edge (as libzmq's abort under the memory limit would): a new one serves the same ports, the
    logged-in client carries on with its session, and no worker or broker changed."""
    client = new_client(daemon, tmp_path / "c", timeout=PING_TIMEOUT)
    with client:
        login(client, user.name, user.password)
        eventually(lambda: roles(daemon)["edge"], "the edge")
        start = roles(daemon)
        (edge,) = start["edge"]
        psutil.Process(edge).kill()
        eventually(lambda: roles(daemon)["edge"] - {edge}, "a new edge", timeout=10)
        after = roles(daemon)
        assert client.whoami().user == user.name
    assert after["broker"] == start["broker"]
    assert after["workers"] >= start["workers"]
    assert "the edge exited (killed by SIGKILL)" in daemon.log()

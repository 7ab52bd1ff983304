"""A user's own worker floods the broker's backend, and names another user's worker for reaping (DESIGN §1, rule 1).

Bob's kernel worker runs as bob, so bob can take its key (``hostile_worker.steal``) and speak the backend
protocol. ``maxmsgsize`` bounds one frame, not how many: libzmq holds a whole multipart message, about 64
bytes a frame, before the broker sees it, so 60 MB of 2-byte frames would grow the root broker by hundreds
of MiB. The broker's flood guard cuts that connection; a second flood within a minute stops bob's workers,
whose keys die with them. Bob's forged kernel record naming alice's worker is refused, so the broker (a
child subreaper) never reaps alice's worker under its supervisor.

Against a real system-mode daemon with real users: the broker's memory grows by at most 64 MiB, alice's
ping and kernel_list keep answering, her worker stays, bob is served again afterwards, and when alice's
worker dies later the supervisor sees that exit itself.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.ci import require_root
from support.daemon import Daemon, new_client
from support.eventually import eventually
from support.memory import peak_rss, rss, sampled_peak
from users import User, login, system_daemon, users

from ssd.client import Client
from ssd.errors import ErrorCode, RemoteError

ATTACKER = Path(__file__).with_name("hostile_flooder.py")
FLOOD_BYTES = 60_000_000  # on the wire, as in issue 13's finding 1
CURVE_FRAME_WIRE = 37  # one 2-byte frame under CURVE, on the wire
MAX_GROWTH = 64 << 20
REQUEST_TIMEOUT = 30.0  # per request: liveness, not speed
# To see this test fail without the guard, add {"SSD_WORKERS_FLOOD_THRESHOLD": "0"}.
SETTINGS: dict[str, str] = {}


@dataclass
class Prober:
    """Alice's client, asking ping and kernel_list in turn without pause on its own thread."""

    client: Client
    answered: list[float] = field(default_factory=list)  # when each request was sent
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """The thread."""
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                assert self.client.ping("probe").status == "ok"
                self.client.kernel_list()
            except Exception as exc:  # every failure is a finding, reported by the test
                self.failures.append(repr(exc))
                continue
            self.answered.append(sent)

    def answered_since(self, moment: float) -> bool:
        """Whether requests sent after *moment* were answered."""
        return any(sent > moment for sent in self.answered[-20:])

    def stop(self) -> None:
        """Let the thread end after its current round."""
        self._stop.set()


def workers_of(user: User) -> set[int]:
    """Pids of *user*'s worker processes."""
    found = subprocess.run(["pgrep", "-u", user.name, "-f", "ssd.workers"], capture_output=True, text=True)
    return {int(pid) for pid in found.stdout.split()}


def as_user(user: User, argv: list[str], stdin: str) -> dict[str, Any]:
    """Run *argv* as *user* (uid, gid, no root groups), as that user could from a shell; its JSON report."""
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=200, cwd=user.home,
        user=user.uid, group=user.gid, extra_groups=[], env={"HOME": str(user.home), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def records_naming(daemon: Daemon, pid: int) -> int:
    """Kernel records in the state store that name *pid*."""
    db = sqlite3.connect(f"file:{daemon.state_dir / 'state.db'}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM kernels WHERE pid = ?", (pid,)).fetchone()[0])
    finally:
        db.close()


def served(client: Client) -> bool:
    """Whether *client*'s kernel_list is answered (a worker that is still starting may make it fail)."""
    try:
        return client.kernel_list() == []
    except RemoteError as exc:
        if exc.code not in (ErrorCode.SERVICE_UNAVAILABLE, ErrorCode.WORKER_LOST):
            raise
        return False


def client_of(daemon: Daemon, tmp: Path, user: User) -> Client:
    """A logged-in client of *user*."""
    client = new_client(daemon, tmp / f"client-{user.name}", timeout=REQUEST_TIMEOUT)
    client.connect()
    login(client, user.name, user.password)
    return client


def attack(daemon: Daemon, bob: User, plan: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Run bob's attacker; the broker's peak resident growth while it ran, and its report."""
    broker = daemon.process.pid
    before, hwm_before = rss(broker), peak_rss(broker)
    with sampled_peak(lambda: rss(broker)) as watched:
        report = as_user(bob, [sys.executable, str(ATTACKER), json.dumps(plan)], f"{daemon.info['public_key']}\n")
    hwm_after = peak_rss(broker)
    peak = max(watched.value, hwm_after if hwm_after > hwm_before else 0)
    return peak - before, report


@pytest.mark.root
@pytest.mark.timeout(300)
def test_a_users_worker_flooding_the_backend_costs_only_that_user(tmp_path: Path) -> None:
    """60 MB of 2-byte frames from bob's worker key: bounded broker memory, alice unaffected, bob stopped then
    served again; bob's record naming alice's worker refused, and that worker's later exit seen by its supervisor."""
    require_root()
    with users(2) as (alice, bob), system_daemon(tmp_path, SETTINGS) as daemon:
        a, b = client_of(daemon, tmp_path, alice), client_of(daemon, tmp_path, bob)
        prober = Prober(a)
        thread = threading.Thread(target=prober.run)
        try:
            a.kernel_list()  # alice's kernel worker starts
            b.kernel_list()  # and bob's
            (alice_worker,), (bob_worker,) = workers_of(alice), workers_of(bob)
            thread.start()
            plan = {
                "pid": bob_worker, "user": bob.name, "frames": FLOOD_BYTES // CURVE_FRAME_WIRE, "attempts": 5,
                "forge_pid": alice_worker,
            }  # fmt: skip
            growth, report = attack(daemon, bob, plan)
            over = time.monotonic()
            eventually(lambda: prober.answered_since(over) or prober.failures, "alice answered after the flood")
            prober.stop()
            thread.join()
            print(f"broker grew {growth / 2**20:.1f} MiB; attacker {report}; {len(prober.answered)} probes")
            assert growth <= MAX_GROWTH, f"the broker grew {growth >> 20} MiB under the flood ({report})"
            assert not prober.failures, f"alice's requests failed: {prober.failures[:3]}"
            outcomes = report["outcomes"]
            assert outcomes[-1] == "refused", f"bob's stolen key still works after the cuts: {outcomes}"
            assert set(outcomes[:-1]) == {"cut"}, f"a flood was not cut: {outcomes}"
            assert alice_worker in workers_of(alice), "alice's worker was lost"
            eventually(lambda: served(b), "bob served again (by a fresh worker, with a new key)")
            # The forged record was refused (not stored), so nothing ever tried to reap alice's worker.
            assert records_naming(daemon, alice_worker) == 0
            assert f"naming pid {alice_worker}" in daemon.log()
            os.kill(alice_worker, signal.SIGKILL)
            eventually(
                lambda: f"worker kernel:{alice.name} exited (killed by SIGKILL)" in daemon.log(),
                "the supervisor saw alice's worker die",
            )
            eventually(lambda: served(a), "alice served by a new worker")
        finally:
            prober.stop()
            if thread.is_alive():
                thread.join()
            a.close()
            b.close()

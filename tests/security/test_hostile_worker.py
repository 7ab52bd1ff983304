"""Issue 13, findings 3 and 4: a user's own worker is hostile, and nothing it says reaches another user.

Bob's kernel worker runs as bob, so bob can read its memory and take its place: ``hostile_worker.py``,
run as bob (not as root), does exactly that and then forges alice's events (topics of its choosing, her
kernel's id, a connection box sealed to her public key), stores 150 kernel records, sends a frame larger
than the backend allows, and floods. Alice, a real logged-in client, sees nothing of it; her next
kernel start works; the host and the state store hold no more of bob than his cap; the flooding worker
is stopped while it still heartbeats.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from envfixtures import public_dir
from kerneltools import EventTap, give_env
from support.ci import require_root
from support.daemon import Daemon, new_client
from support.memory import peak_rss
from users import User, login, system_daemon, users

from ssd.client import Client
from ssd.replies import KernelStartReply

HOSTILE = Path(__file__).with_name("hostile_worker.py")
PER_USER, PER_HOST = 3, 5
LIMITS = {
    "SSD_KERNELS_MAX_PER_USER": str(PER_USER),
    "SSD_KERNELS_MAX_PER_HOST": str(PER_HOST),
    "SSD_SERVER_STATUS_INTERVAL": "1",
}
OVERSIZE = 64 << 20


def _client(daemon: Daemon, tmp: Path, user: User) -> Client:
    client = new_client(daemon, tmp / f"client-{user.name}", timeout=60)
    client.connect()
    login(client, user.name, user.password)
    return client


def _workers_of(user: User) -> list[int]:
    found = subprocess.run(["pgrep", "-u", user.name, "-f", "ssd.workers"], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def _as_user(user: User, argv: list[str], stdin: str) -> dict[str, Any]:
    """Run *argv* as *user* (uid, gid, no root groups), as that user could from a shell."""
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=50, cwd=user.home,
        user=user.uid, group=user.gid, extra_groups=[], env={"HOME": str(user.home), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _records_of(daemon: Daemon, user: str) -> int:
    db = sqlite3.connect(f"file:{daemon.state_dir / 'state.db'}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM kernels WHERE user = ?", (user,)).fetchone()[0])
    finally:
        db.close()


@pytest.mark.root
@pytest.mark.timeout(150)
def test_bobs_hostile_worker_reaches_nothing_of_alice(tmp_path: Path) -> None:
    """Every attack of findings 3 and 4 from a real process holding bob's worker key, as bob."""
    require_root()
    with users(2) as (alice, bob), public_dir() as where, system_daemon(tmp_path, LIMITS) as daemon:
        give_env(alice, where)
        give_env(bob, where)
        a, b = _client(daemon, tmp_path, alice), _client(daemon, tmp_path, bob)
        tap = EventTap(a, "")  # everything the events socket sends, whatever alice would subscribe to
        try:
            mine = a.kernel_start("sci", "ipykernel")
            kernel_id = mine.kernel.kernel_id
            b.kernel_list()  # bob's kernel worker starts
            (worker,) = _workers_of(bob)
            broker = int(str(daemon.info["pid"]))
            peak = peak_rss(broker)
            plan = {
                "pid": worker, "user": bob.name, "alice": alice.name, "alice_kernel": kernel_id,
                "alice_key": a.aclient.identity.public.decode(), "records": 150, "oversize": OVERSIZE, "flood": 20000,
            }  # fmt: skip
            server_key = str(a.server_info().public_key)
            report = _as_user(bob, [sys.executable, str(HOSTILE), json.dumps(plan)], server_key + "\n")
            assert report["stole"]
            after = time.time()  # a host_status of a later time comes after everything the attacker sent
            tap.wait_for(lambda t, k, c: k == "host_status" and c["time"] > after)
            # Finding 3: nothing under alice's topics but her kernel, nothing about her kernel from bob.
            _check_alice_saw_nothing(tap.seen, alice, kernel_id, a, mine)
            # Finding 4: records capped by the broker, in the store and in the host's count.
            assert _records_of(daemon, bob.name) <= PER_USER
            # Finding 4: a frame larger than the backend's bound was refused before it was buffered.
            assert peak_rss(broker) - peak < 48 << 20, "the broker buffered the oversize frame"
            a.kernel_start("sci", "ipykernel")  # 1 + bob's 3 < 5: room, whatever bob's worker said
            # Finding 4: the flood stopped the worker it came from, though that key went on heartbeating.
            assert report["worker_killed_while_heartbeating"], "a flooding worker was not stopped"
        finally:
            tap.close()
            for client in (a, b):
                for kernel in client.kernel_list():
                    client.kernel_shutdown(kernel.kernel_id)
                client.close()


def _check_alice_saw_nothing(
    seen: list[tuple[str, str, dict[str, Any]]], alice: User, kernel_id: str, a: Client, mine: KernelStartReply
) -> None:
    """Finding 3: no event under alice's topics but her own kernels' lifecycle; no event of bob's about her
    kernel; no box that alice opens but the one the server sealed for her kernel."""
    for topic, _kind, content in seen:
        text = json.dumps(content)
        if topic.startswith((f"kernel.{alice.name}", f"env_progress.{alice.name}")):
            assert "HOSTILE" not in text, (topic, content)
            assert topic.rstrip("/") == f"kernel.{alice.name}", (topic, content)
        if content.get("kernel_id") == kernel_id:
            assert content["state"] in ("starting", "ready"), (topic, content)
        opened = a.sealed_connection_info(content)
        assert opened is None or "203.0.113.66" not in json.dumps(opened), "alice opened a forged box"
        if content.get("kernel_id") == kernel_id and opened is not None:
            assert opened == a.connection_info(mine.connection)

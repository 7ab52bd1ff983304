"""Kernels outlive their worker and the daemon: after kill -9 of either, the kernel is re-adopted
(listed, controllable, same connection info); a kernel that died meanwhile is reported dead and
cleaned up. Real users, real kernels, real SIGKILL.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
from envfixtures import public_dir
from kerneltools import EventTap, evaluate, give_env, process_state
from support.ci import require_root
from support.daemon import Daemon, new_client
from support.eventually import eventually
from users import User, login, start_system_daemon, stop_and_audit, users

from ssd.client import Client
from ssd.errors import ErrorCode, RemoteError
from ssd.replies import KernelDescription
from ssd.topics import KERNEL, user_topic


def _client(daemon: Daemon, tmp: Path, user: User, *, log_in: bool = True) -> Client:
    client = new_client(daemon, tmp / f"client-{user.name}", timeout=60)
    client.connect()
    if log_in:
        login(client, user.name, user.password)
    return client


def _kernel_worker(daemon: Daemon, user: User) -> psutil.Process:
    """The daemon's child running ``ssd.workers`` as *user* with the kernel service."""
    for child in psutil.Process(daemon.process.pid).children():
        if child.uids().real == user.uid and any(k.is_running() for k in child.children()):
            return child
    raise AssertionError(f"no kernel worker of {user.name}")


def _kill_daemon(daemon: Daemon) -> None:
    daemon.process.kill()
    daemon.process.wait()
    (daemon.state_dir / "daemon.json").unlink()  # stale after SIGKILL: the next start writes it anew


def test_kernel_worker_killed_kernel_adopted_then_reaped(tmp_path: Path) -> None:
    """kill -9 of the kernel worker: the restarted worker lists the kernel, it still executes code and
    shuts down; a kernel killed after adoption is published dead and reaped (no zombie)."""
    require_root()
    with users(1) as (alice,), public_dir() as where:
        give_env(alice, where)
        daemon = start_system_daemon(tmp_path)
        client = _client(daemon, tmp_path, alice)
        tap = EventTap(client, user_topic(KERNEL, alice.name))
        try:
            first = client.kernel_start("sci", "ipykernel")
            second = client.kernel_start("sci", "ipykernel")
            info = client.connection_info(first.connection)
            worker = _kernel_worker(daemon, alice)
            worker.kill()
            worker.wait(10)
            eventually(lambda: _has_new_worker(daemon, alice, worker.pid), what="kernel worker restarted")
            listed = {k.kernel_id: k for k in _list_when_back(client)}
            assert set(listed) == {first.kernel.kernel_id, second.kernel.kernel_id}
            assert client.connection_info(client.kernel_info(first.kernel.kernel_id).connection) == info
            assert evaluate(info, "os.getuid()") == alice.uid
            pid = second.kernel.pid
            os.kill(pid, signal.SIGKILL)
            tap.kernel_state(second.kernel.kernel_id, "dead")
            eventually(lambda: process_state(pid) is None, what="orphaned kernel reaped by the daemon")
            client.kernel_shutdown(first.kernel.kernel_id)
            gone = first.kernel.pid
            eventually(lambda: process_state(gone) is None, what="adopted kernel reaped after shutdown")
            assert [(k.kernel_id, k.state) for k in client.kernel_list()] == [
                (second.kernel.kernel_id, "dead")  # kept a while for a restart
            ]
            client.kernel_shutdown(second.kernel.kernel_id)
            assert client.kernel_list() == []
        finally:
            tap.close()
            client.close()
            stop_and_audit(daemon)


def _has_new_worker(daemon: Daemon, user: User, old: int) -> bool:
    """A new kernel worker of *user* runs (the broker also adopts the user's orphaned kernels as children)."""
    return any(
        c.uids().real == user.uid and c.pid != old and "ssd.workers" in " ".join(c.cmdline())
        for c in psutil.Process(daemon.process.pid).children()
    )


def _list_when_back(client: Client) -> list[KernelDescription]:
    def listed() -> list[KernelDescription] | None:
        try:
            return client.kernel_list() or None
        except RemoteError as exc:  # a request that met the killed worker is answered worker_lost: ask again
            if exc.code != ErrorCode.WORKER_LOST:
                raise
            return None

    return eventually(listed, "the kernels listed again", timeout=20, interval=0.1)


def test_daemon_killed_kernels_survive_and_are_readopted(tmp_path: Path) -> None:
    """kill -9 of the daemon: the kernel keeps running; the next daemon (same state) lists it at once,
    it executes code with the same connection info, and it can be shut down. A kernel that died while
    no daemon ran is reported dead and its connection file removed."""
    require_root()
    with users(1) as (alice,), public_dir() as where:
        give_env(alice, where)
        daemon = start_system_daemon(tmp_path)
        client = _client(daemon, tmp_path, alice)
        try:
            alive = client.kernel_start("sci", "spyder")
            doomed = client.kernel_start("sci", "ipykernel")
        finally:
            client.close()
        _kill_daemon(daemon)
        os.kill(doomed.kernel.pid, signal.SIGKILL)
        eventually(lambda: process_state(doomed.kernel.pid) in (None, "Z"), what="kernel killed")
        assert process_state(alive.kernel.pid) not in (None, "Z")
        daemon = start_system_daemon(tmp_path, init=False)
        client = _client(daemon, tmp_path, alice, log_in=False)  # the session survived in the state store
        try:
            (listed,) = _list_when_back(client)
            assert listed.kernel_id == alive.kernel.kernel_id
            assert listed.state == "ready"
            info = client.connection_info(client.kernel_info(listed.kernel_id).connection)
            assert info == client.connection_info(alive.connection)
            assert evaluate(info, "os.getuid()") == alice.uid
            assert not Path(doomed.connection_file).exists()
            client.kernel_shutdown(listed.kernel_id)
            assert not Path(alive.connection_file).exists()
            assert client.kernel_list() == []
        finally:
            client.close()
            stop_and_audit(daemon)


def test_daemon_stop_keeps_kernels_unless_configured(tmp_path: Path) -> None:
    """A clean daemon stop leaves kernels running (they are the users'); with kernels.stop_on_exit
    the stop shuts them down and removes their files."""
    require_root()
    with users(1) as (alice,), public_dir() as where:
        give_env(alice, where)
        daemon = start_system_daemon(tmp_path)
        client = _client(daemon, tmp_path, alice)
        try:
            kept = client.kernel_start("sci", "ipykernel")
        finally:
            client.close()
        stop_and_audit(daemon)
        assert process_state(kept.kernel.pid) not in (None, "Z")
        daemon = start_system_daemon(tmp_path, init=False, extra_env={"SSD_KERNELS_STOP_ON_EXIT": "true"})
        client = _client(daemon, tmp_path, alice, log_in=False)
        try:
            assert [k.kernel_id for k in _list_when_back(client)] == [kept.kernel.kernel_id]
        finally:
            client.close()
        stop_and_audit(daemon)
        eventually(lambda: process_state(kept.kernel.pid) in (None, "Z"), what="kernel stopped")
        assert not Path(kept.connection_file).exists()

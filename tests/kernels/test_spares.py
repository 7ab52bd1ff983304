"""Spare kernels against a real system-mode daemon, real users and real kernels: a start served from a
spare is a fresh kernel as the user in the environment; a changed environment, spare_idle, the end of the
user's sessions and the daemon's stop end spares; limits count spares but never refuse a start for them;
spares are absent from kernel_list and listed by ssd-ctl kernels --spares.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import psutil
from envfixtures import public_dir
from kerneltools import EventTap, evaluate, gate_env, give_env, kernel_client, run, stop_all, two_users, user_client
from support.ci import require_root
from support.eventually import eventually
from users import chown_tree, error_of, login, system_daemon, users

from ssd.client import Client
from ssd.errors import ErrorCode
from ssd.replies import KernelDescription
from ssd.topics import KERNEL, user_topic

EMPTY_NAMESPACE = (
    "sorted(k for k in get_ipython().user_ns if not k.startswith('_') "
    "and k not in ('In', 'Out', 'exit', 'quit', 'get_ipython', 'os', 'sys'))"
)


def _ready_spare(client: Client, count: int = 1) -> list[KernelDescription]:
    """Wait until the user has *count* spares, all ready."""

    def ready() -> list[KernelDescription] | None:
        spares = client.kernel_list(spares=True)
        return spares if len(spares) == count and all(s.state == "ready" for s in spares) else None

    found = eventually(ready, timeout=40, what=f"{count} ready spare(s)")
    assert found is not None
    return found


def _gone(pid: int) -> None:
    eventually(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", what=f"pid {pid} gone")


def test_a_start_from_a_spare_is_a_fresh_kernel_of_the_user(tmp_path: Path) -> None:
    """After a start, a spare is kept (not in kernel_list); the next start takes it: the user's uid, the
    environment's prefix, an empty namespace, execution count 1, the requested folder; then a new spare."""
    require_root()
    with users(1) as (alice,), public_dir() as where, system_daemon(tmp_path) as daemon:
        prefix = give_env(alice, where)
        work = alice.home / "project"
        work.mkdir()
        chown_tree(work, alice)
        a = user_client(daemon, tmp_path, alice)
        try:
            first = a.kernel_start("sci", "ipykernel", env_vars={"TZ": "UTC"})
            assert first.timing.get("spare") is None  # cold
            baseline = evaluate(a.connection_info(first.connection), EMPTY_NAMESPACE)  # a cold kernel's own names
            with kernel_client(a.connection_info(first.connection)) as kc:
                run(kc, "leftover = 42")
            (spare,) = _ready_spare(a)
            assert spare.spare
            assert spare.kernel_id not in {k.kernel_id for k in a.kernel_list()}
            served = a.kernel_start("sci", "ipykernel", cwd=str(work), env_vars={"TZ": "UTC"}, name="mine")
            assert served.kernel.kernel_id == spare.kernel_id
            assert served.timing.get("spare") == 1.0
            assert served.kernel.name == "mine"
            assert not served.kernel.spare
            assert served.kernel.cwd == str(work)
            info = a.connection_info(served.connection)
            with kernel_client(info) as kc:
                reply, _ = run(kc, "x = 1")
                assert reply["execution_count"] == 1  # the silent chdir left no trace in the history
            uid, where_, cwd, tz = evaluate(info, "(os.getuid(), sys.prefix, os.getcwd(), os.environ.get('TZ'))")
            assert (uid, where_, cwd, tz) == (alice.uid, str(prefix), str(work), "UTC")
            assert evaluate(info, EMPTY_NAMESPACE) == sorted([*baseline, "x"])
            assert str(alice.home) not in evaluate(info, "sys.path")[:1]
            listed = {k.kernel_id for k in a.kernel_list()}
            assert listed == {first.kernel.kernel_id, served.kernel.kernel_id}
            (again,) = _ready_spare(a)  # refilled in the background
            assert again.kernel_id not in listed
            # Variables the spare was not started with: a cold start.
            cold = a.kernel_start("sci", "ipykernel", env_vars={"TZ": "Europe/Paris"})
            assert cold.kernel.kernel_id != again.kernel_id
            assert cold.timing.get("spare") is None
        finally:
            stop_all(a)


def test_a_spyder_spare_moved_to_the_requested_folder_is_where_spyder_looks(tmp_path: Path) -> None:
    """A Spyder kernel from a spare, asked for another folder: the kernel's own get_cwd (what the Spyder
    plugin reads) answers that folder, and the history is empty."""
    require_root()
    with users(1) as (alice,), public_dir() as where, system_daemon(tmp_path) as daemon:
        give_env(alice, where)
        work = alice.home / "analysis"
        work.mkdir()
        chown_tree(work, alice)
        a = user_client(daemon, tmp_path, alice)
        try:
            a.kernel_start("sci", "spyder")
            (spare,) = _ready_spare(a)
            served = a.kernel_start("sci", "spyder", cwd=str(work))
            assert served.kernel.kernel_id == spare.kernel_id
            with kernel_client(a.connection_info(served.connection)) as kc:
                reply, printed = run(kc, "print(get_ipython().kernel.get_cwd())")
            assert reply["execution_count"] == 1
            assert printed.strip() == str(work)
        finally:
            stop_all(a)


def test_an_installed_or_removed_package_retires_the_spare(tmp_path: Path) -> None:
    """A package added to the environment (its files, as pip writes them: the kernel env has no pip): the spare
    is not served (the next kernel imports the package) and it is stopped; the package removed again: the
    spare started since is not served either (the next kernel does not find it)."""
    require_root()
    with users(1) as (alice,), public_dir() as where, system_daemon(tmp_path) as daemon:
        prefix = give_env(alice, where)
        a = user_client(daemon, tmp_path, alice)
        try:
            a.kernel_start("sci", "ipykernel")
            (spare,) = _ready_spare(a)
            (site,) = prefix.glob("lib/python*/site-packages")
            package = site / "spare_probe"
            package.mkdir()
            (package / "__init__.py").write_text("VALUE = 17\n")
            (site / "spare_probe-1.0.dist-info").mkdir()
            (site / "spare_probe-1.0.dist-info" / "METADATA").write_text("Name: spare-probe\nVersion: 1.0\n")
            chown_tree(site, alice)
            started = a.kernel_start("sci", "ipykernel")
            assert started.kernel.kernel_id != spare.kernel_id
            assert evaluate(a.connection_info(started.connection), "__import__('spare_probe').VALUE") == 17
            _gone(spare.pid)
            eventually(lambda: spare.kernel_id not in {s.kernel_id for s in a.kernel_list(spares=True)}, "spare gone")
            (fresh,) = _ready_spare(a)  # refilled, with the package
            shutil.rmtree(package)
            shutil.rmtree(site / "spare_probe-1.0.dist-info")
            again = a.kernel_start("sci", "ipykernel")
            assert again.kernel.kernel_id != fresh.kernel_id
            found = "__import__('importlib.util').util.find_spec('spare_probe') is None"
            assert evaluate(a.connection_info(again.connection), found) is True
            _gone(fresh.pid)
        finally:
            stop_all(a)


def test_spare_idle_logout_and_daemon_stop_end_spares(tmp_path: Path) -> None:
    """spare_idle=3 stops an unused spare; a logout stops the spares of a user without sessions; the
    daemon's stop stops spares (not the user's kernels, which stay by default)."""
    require_root()
    with users(1) as (alice,), public_dir() as where:
        give_env(alice, where)
        with system_daemon(tmp_path, {"SSD_KERNELS_SPARE_IDLE": "3"}) as daemon:
            a = user_client(daemon, tmp_path, alice)
            try:
                kernel = a.kernel_start("sci", "ipykernel").kernel
                (spare,) = _ready_spare(a)
                _gone(spare.pid)
                assert a.kernel_list(spares=True) == []
                assert [k.kernel_id for k in a.kernel_list()] == [kernel.kernel_id]  # never culled as a kernel
            finally:
                stop_all(a)
        (tmp_path / "again").mkdir()
        with system_daemon(tmp_path / "again") as daemon:
            a = user_client(daemon, tmp_path / "again", alice)
            a.kernel_start("sci", "ipykernel")
            (spare,) = _ready_spare(a)
            a.logout()
            _gone(spare.pid)
            login(a, alice.name, alice.password)
            a.kernel_start("sci", "spyder")
            (spare,) = _ready_spare(a, 1)
            stop_all(a)
        _gone(spare.pid)


def test_limits_count_spares_but_never_refuse_for_them(tmp_path: Path) -> None:
    """max_per_user=2, max_per_host=3: at the user's limit no spare is kept, and a start of another kind
    succeeds (the spare makes room); the host's limit stops spares, and a start is admitted over them."""
    require_root()
    limits = {"SSD_KERNELS_MAX_PER_USER": "2", "SSD_KERNELS_MAX_PER_HOST": "3"}
    with two_users(tmp_path, limits) as pair:
        a, b = pair.a, pair.b
        a.kernel_start("sci", "ipykernel")
        (spare,) = _ready_spare(a)  # 1 kernel + 1 spare: alice at her limit
        a.kernel_start("sci", "spyder")  # never refused for the spare: it made room
        _gone(spare.pid)
        assert len(a.kernel_list()) == 2
        assert error_of(a.kernel_start, "sci", "ipykernel").code == ErrorCode.LIMIT_REACHED
        b.kernel_start("sci", "ipykernel")  # the host: 3 kernels, so bob's spare is stopped
        eventually(lambda: b.kernel_list(spares=True) == [], what="bob's spare stopped at the host's limit")
        assert a.kernel_list(spares=True) == []
        assert error_of(b.kernel_start, "sci", "ipykernel").code == ErrorCode.LIMIT_REACHED


def test_host_limit_admits_a_start_over_another_users_spare(tmp_path: Path) -> None:
    """max_per_host=3: alice's kernel and spare and bob's kernel fill the host; bob's next start is
    admitted, and a spare goes so that the host holds at most 3."""
    require_root()
    with two_users(tmp_path, {"SSD_KERNELS_MAX_PER_HOST": "3"}) as pair:
        a, b = pair.a, pair.b
        a.kernel_start("sci", "ipykernel")
        (spare,) = _ready_spare(a)
        b.kernel_start("sci", "spyder")
        b.kernel_start("sci", "ipykernel")  # 2 kernels + alice's spare: admitted all the same
        _gone(spare.pid)
        eventually(lambda: len(a.kernel_list(spares=True)) + len(b.kernel_list(spares=True)) == 0, "no spares")


def test_a_start_between_its_record_and_its_reply_is_counted_once(tmp_path: Path) -> None:
    """max_per_user=2, max_per_host=3, spares on. Alice's kernel held at start-up (its record sent, its reply
    not): her next start and bob's are admitted (each counted once, not as record and start both); alice at
    her limit gets no spare; bob's spare goes at the host's limit and his next start is the one refused."""
    require_root()
    limits = {"SSD_KERNELS_MAX_PER_USER": "2", "SSD_KERNELS_MAX_PER_HOST": "3"}
    with two_users(tmp_path, limits) as pair, ThreadPoolExecutor(1) as pool:
        a, b, gate = pair.a, pair.b, pair.where / "gate-open"
        gate_env(pair.alice, pair.where, gate)
        tap = EventTap(a, user_topic(KERNEL, pair.alice.name))
        other = user_client(pair.daemon, tmp_path / "held", pair.alice)  # alice's second session
        held = pool.submit(other.kernel_start, "gated", "ipykernel")
        try:
            tap.wait_for(lambda topic, kind, content: kind == "kernel_state" and content.get("state") == "starting")
            second = a.kernel_start("sci", "ipykernel")  # 1 kernel starting + this one: alice's limit, not over
            assert a.kernel_list(spares=True) == []  # at her limit: no spare
            bob = b.kernel_start("sci", "ipykernel")  # the host: alice's 2 + bob's 1
            refused = error_of(b.kernel_start, "sci", "spyder")
            assert refused.code == ErrorCode.LIMIT_REACHED
            assert "3 kernels" in str(refused)
            eventually(lambda: b.kernel_list(spares=True) == [], what="bob's spare stopped at the host's limit")
        finally:
            gate.touch()
            wait([held], timeout=60)  # the client is closed only once its start was answered
            tap.close()
            other.close()
        first = held.result(timeout=0)
        assert {k.kernel_id for k in a.kernel_list()} == {first.kernel.kernel_id, second.kernel.kernel_id}
        assert [k.kernel_id for k in b.kernel_list()] == [bob.kernel.kernel_id]
        assert a.kernel_list(spares=True) == []


def test_ssd_ctl_lists_and_sets_spares(tmp_path: Path) -> None:
    """ssd-ctl kernels --spares lists the spares (kernels does not); ssd-ctl spares HOST ENV N sets the
    user's own number, capped by the host's kernels.spares and remembered by the next worker."""
    require_root()
    with users(1) as (alice,), public_dir() as where:
        give_env(alice, where)
        with system_daemon(tmp_path, {"SSD_KERNELS_SPARES": "2"}) as daemon:
            a = user_client(daemon, tmp_path, alice)
            client_dir = tmp_path / f"client-{alice.name}"
            try:

                def ctl(*args: str) -> Any:
                    env = {**os.environ, "SSD_CLIENT_DIR": str(client_dir)}
                    result = subprocess.run(
                        [sys.executable, "-m", "ssd.ctl.main", *args, "--json"],
                        env=env,
                        capture_output=True,
                        text=True,
                        timeout=60,
                    )
                    assert result.returncode == 0, result.stderr
                    return json.loads(result.stdout)

                set_to = ctl("spares", daemon.host, "sci", "5")
                assert set_to["count"] == 2
                assert set_to["host_cap"] == 2
                assert ctl("spares", daemon.host, "sci", "1")["count"] == 1
                kernel = a.kernel_start("sci", "ipykernel").kernel
                (spare,) = _ready_spare(a)
                listed = ctl("kernels", daemon.host, "--spares")["spare_kernels"]
                assert [k["kernel_id"] for k in listed] == [spare.kernel_id]
                assert [k["kernel_id"] for k in ctl("kernels", daemon.host)["kernels"]] == [kernel.kernel_id]
                assert ctl("spares", daemon.host, "sci", "0")["count"] == 0
                _gone(spare.pid)
            finally:
                stop_all(a)

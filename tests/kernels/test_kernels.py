"""Kernels end to end, as root in CI: real users, real PAM logins, real Spyder and Jupyter kernels
started by the user's kernel worker, driven with jupyter_client from the returned connection info.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from envfixtures import public_dir
from kerneltools import EventTap, evaluate, give_env, kernel_client, owner_and_mode, process_state, run
from support.ci import require_root
from support.daemon import Daemon, new_client
from support.eventually import eventually
from users import User, error_of, login, system_daemon, users

from ssd.client import Client
from ssd.errors import ErrorCode
from ssd.kernels.connection import CLASSIC_KEYS, CURVE_KEYS
from ssd.topics import KERNEL, user_topic

NO_SUCH_KERNEL = "00000000-0000-0000-0000-000000000000"
ROOT_ONLY = {"SSD_TEST_ROOT_SECRET": "root-environment-must-not-leak"}


def _client(daemon: Daemon, tmp: Path, user: User) -> Client:
    client = new_client(daemon, tmp / f"client-{user.name}", timeout=60)
    client.connect()
    login(client, user.name, user.password)
    return client


def test_spyder_kernel_runs_as_the_user_in_the_environment(tmp_path: Path) -> None:
    """uid, sys.prefix, activated environment, allowed variables only; kernel_info has spyder_kernels_info."""
    require_root()
    with users(1) as (alice,), public_dir() as where, system_daemon(tmp_path, ROOT_ONLY) as daemon:
        prefix = give_env(alice, where)
        client = _client(daemon, tmp_path, alice)
        try:
            reply = client.kernel_start("sci", "spyder", env_vars={"SPY_TEST_FLAG": "on"}, name="analysis")
            kernel = reply.kernel
            info = client.connection_info(reply.connection)
            assert set(info) == {*CLASSIC_KEYS, *CURVE_KEYS}  # through the CURVE relay (the default)
            assert reply.kernel_info["spyder_kernels"] == "3.1.6"
            assert reply.kernel_info["language"] == "python"
            assert kernel.name == "analysis"
            assert kernel.kind == "spyder"
            assert kernel.env == str(prefix)
            assert owner_and_mode(reply.connection_file) == (alice.uid, 0o600)
            assert reply.connection_file.startswith(str(alice.home))
            facts = evaluate(
                info,
                "(os.getuid(), sys.prefix, os.environ.get('CONDA_PREFIX'), os.environ.get('SPY_TEST_FLAG'),"
                " os.environ.get('SSD_TEST_ROOT_SECRET'), os.getcwd(), sorted(os.environ))",
            )
            uid, sys_prefix, conda_prefix, flag, secret, cwd, names = facts
            assert (uid, sys_prefix, conda_prefix, flag, secret) == (alice.uid, str(prefix), str(prefix), "on", None)
            assert cwd == str(alice.home)
            assert not [n for n in names if n.startswith("SSD_")], names
            with kernel_client(info) as kc:
                kc.kernel_info()
                raw = kc.get_shell_msg(timeout=30)["content"]
            assert raw["spyder_kernels_info"][0] == "3.1.6"
            assert os.getsid(kernel.pid) == kernel.pid  # its own session: it outlives the worker
        finally:
            for kernel in client.kernel_list():
                client.kernel_shutdown(kernel.kernel_id)
            client.close()


def test_ipykernel_interrupt_restart_shutdown(tmp_path: Path) -> None:
    """ipykernel kind; interrupt (signal and message) stops sleep(60); restart keeps id and ports, clears
    state; shutdown removes the process (reaped, no zombie) and the connection file."""
    require_root()
    with users(1) as (alice,), public_dir() as where, system_daemon(tmp_path) as daemon:
        give_env(alice, where)
        client = _client(daemon, tmp_path, alice)
        try:
            reply = client.kernel_start("sci", "ipykernel", cwd=str(where))
            kernel_id, info = reply.kernel.kernel_id, client.connection_info(reply.connection)
            assert reply.kernel_info["spyder_kernels"] is None
            assert evaluate(info, "(os.getuid(), os.getcwd())") == (alice.uid, str(where))
            with kernel_client(info) as kc:
                assert run(kc, "state = 42")[0]["status"] == "ok"
                for mode in ("signal", "message"):
                    # stop_on_error=False: the interrupted cell must not abort the next one sent right after.
                    msg_id = kc.execute("import time; time.sleep(60)", stop_on_error=False)
                    eventually(lambda: _busy(client, kernel_id), what="kernel busy")
                    assert client.kernel_interrupt(kernel_id, mode).mode == mode
                    answer = _reply_to(kc, msg_id)
                    assert answer["status"] == "error"
                    assert answer["ename"] == "KeyboardInterrupt"
                    eventually(lambda: not _busy(client, kernel_id), what="kernel idle again")
            old_pid = reply.kernel.pid
            restarted = client.kernel_restart(kernel_id)
            assert restarted.kernel.kernel_id == kernel_id
            assert restarted.kernel.pid != old_pid
            assert process_state(old_pid) is None  # reaped, not a zombie
            again = client.connection_info(client.kernel_info(kernel_id).connection)
            assert again == info  # same ports and key
            assert evaluate(info, "'state' in globals()") is False
            pid, file = restarted.kernel.pid, reply.connection_file
            client.kernel_shutdown(kernel_id)
            assert process_state(pid) is None
            assert not Path(file).exists()
            assert client.kernel_list() == []
        finally:
            for kernel in client.kernel_list():
                client.kernel_shutdown(kernel.kernel_id)
            client.close()


def _busy(client: Client, kernel_id: str) -> bool:
    return any(k.execution_state == "busy" for k in client.kernel_list() if k.kernel_id == kernel_id)


def _reply_to(kc: object, msg_id: str) -> dict[str, object]:
    while True:
        msg = kc.get_shell_msg(timeout=30)  # type: ignore[attr-defined]
        if msg["parent_header"].get("msg_id") == msg_id:
            return dict(msg["content"])


def test_users_cannot_see_or_touch_each_others_kernels(tmp_path: Path) -> None:
    """B gets the same kernel_not_found for A's kernel as for no kernel; B's list is empty."""
    require_root()
    with users(2) as (alice, bob), public_dir() as where, system_daemon(tmp_path) as daemon:
        give_env(alice, where)
        a, b = _client(daemon, tmp_path, alice), _client(daemon, tmp_path, bob)
        try:
            kernel_id = a.kernel_start("sci", "ipykernel").kernel.kernel_id
            assert b.kernel_list() == []
            for call in (b.kernel_info, b.kernel_shutdown, b.kernel_restart, b.kernel_interrupt):
                mine = error_of(call, kernel_id)
                none = error_of(call, NO_SUCH_KERNEL)
                assert mine.code == none.code == ErrorCode.KERNEL_NOT_FOUND
                # Word for word the same answer, but for the id asked about: nothing tells that A's exists.
                assert str(mine).replace(kernel_id, "ID") == str(none).replace(NO_SUCH_KERNEL, "ID")
            assert error_of(b.kernel_start, str(where / alice.name / "sci")).code == "env_not_found"
            assert [k.kernel_id for k in a.kernel_list()] == [kernel_id]  # untouched
        finally:
            for kernel in a.kernel_list():
                a.kernel_shutdown(kernel.kernel_id)
            a.close()
            b.close()


def test_bad_kernel_requests_get_clear_errors(tmp_path: Path) -> None:
    """Unknown env, env without the package, cwd the user may not use, variables outside the allow-list,
    unknown kind: each a clear error, and nothing keeps running."""
    require_root()
    with users(1) as (alice,), public_dir() as where, system_daemon(tmp_path) as daemon:
        prefix = give_env(alice, where)
        for package in (prefix / "lib").glob("python3.*/site-packages/spyder_kernels*"):
            os.rename(package, str(package) + ".hidden")  # the env now lacks spyder-kernels
        client = _client(daemon, tmp_path, alice)
        try:
            cases = [
                ({"env": "nope"}, "env_not_found", "no environment 'nope'"),
                ({"env": "sci", "kind": "spyder"}, "kernel_package_missing", f"ssd-ctl env install {daemon.host} sci"),
                ({"env": "sci", "kind": "ipykernel", "cwd": "/root"}, "cwd_refused", "/root"),
                ({"env": "sci", "kind": "ipykernel", "cwd": "/no/such/dir"}, "cwd_refused", "does not exist"),
                ({"env": "sci", "kind": "ipykernel", "env_vars": {"LD_PRELOAD": "x"}}, "env_var_refused", "LD_PRELOAD"),
                ({"env": "sci", "kind": "julia"}, "bad_request", "kind"),
                ({"env": "sci", "env_vars": {"A=B": "x"}}, "bad_request", "env_vars"),
            ]
            for content, code, text in cases:
                exc = error_of(client.request, "kernel_start_request", content)
                assert exc.code == code, (content, exc)
                assert text in str(exc), (content, str(exc))
                assert "Traceback" not in str(exc)
            assert client.kernel_list() == []
        finally:
            client.close()


def test_kernel_death_is_published_and_reaped(tmp_path: Path) -> None:
    """kill -9 of a kernel: a dead event (exit code -9), no zombie, listed as dead and restartable with the
    same id and ports; with restart=True it comes back by itself under the same id and ports."""
    require_root()
    with users(1) as (alice,), public_dir() as where, system_daemon(tmp_path) as daemon:
        give_env(alice, where)
        client = _client(daemon, tmp_path, alice)
        tap = EventTap(client, user_topic(KERNEL, alice.name))
        try:
            reply = client.kernel_start("sci", "ipykernel")
            plain, info = reply.kernel, client.connection_info(reply.connection)
            os.kill(plain.pid, signal.SIGKILL)
            dead = tap.kernel_state(plain.kernel_id, "dead")
            assert dead["exit_code"] == -9
            assert "key" not in dead
            assert "connection" not in dead
            eventually(lambda: process_state(plain.pid) is None, what="dead kernel reaped")
            assert [k.state for k in client.kernel_list()] == ["dead"]
            revived = client.kernel_restart(plain.kernel_id).kernel
            assert revived.state == "ready"
            assert revived.pid != plain.pid
            assert evaluate(info, "os.getuid()") == alice.uid  # same ports and key as before
            client.kernel_shutdown(plain.kernel_id)
            reply = client.kernel_start("sci", "ipykernel", restart=True)
            kept, info = reply.kernel, client.connection_info(reply.connection)
            os.kill(kept.pid, signal.SIGKILL)
            tap.kernel_state(kept.kernel_id, "dead")
            tap.kernel_state(kept.kernel_id, "restarted")
            (listed,) = client.kernel_list()
            assert listed.kernel_id == kept.kernel_id
            assert listed.restarts == 1
            assert evaluate(info, "os.getuid()") == alice.uid
        finally:
            tap.close()
            for kernel in client.kernel_list():
                client.kernel_shutdown(kernel.kernel_id)
            client.close()


@pytest.mark.parametrize("kind", ["spyder"])
def test_kernel_info_summary_fields(tmp_path: Path, kind: str) -> None:
    """The start reply's timing and summary are present and typed (what ssd-ctl prints)."""
    require_root()
    with users(1) as (alice,), public_dir() as where, system_daemon(tmp_path) as daemon:
        give_env(alice, where)
        client = _client(daemon, tmp_path, alice)
        try:
            reply = client.kernel_start("sci", kind)
            assert reply.timing["ready"] >= reply.timing["spawn"] > 0
            assert reply.kernel_info["implementation"] == "ipython"
            assert reply.kernel.state == "ready"
        finally:
            for kernel in client.kernel_list():
                client.kernel_shutdown(kernel.kernel_id)
            client.close()

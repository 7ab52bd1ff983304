"""The per-user env worker, for real: started as the user, sees what the user sees, retired when idle."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psutil
import pytest
from envfixtures import conda_copy, heavy_venv, make_conda_style, make_venv, public_dir
from support.ci import require_root
from support.daemon import Daemon, new_client
from support.eventually import eventually
from users import User, login, system_daemon, users

from ssd.client import Client
from ssd.errors import ErrorCode, RemoteError

ALLOWED_ENV = {"HOME", "USER", "LOGNAME", "SHELL", "PATH", "LANG"}


def _client(daemon: Daemon, tmp: Path, user: User) -> Client:
    client = new_client(daemon, tmp / f"client-{user.name}", timeout=30)
    client.connect()
    login(client, user.name, user.password)
    return client


def _env_worker(daemon: Daemon, user: User) -> psutil.Process:
    """The daemon's child process running as *user* (the env worker)."""

    def mine() -> psutil.Process | None:
        return next((p for p in psutil.Process(daemon.process.pid).children() if p.uids().real == user.uid), None)

    return eventually(mine, f"a worker running as {user.name}", timeout=10)


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def test_env_worker_runs_exactly_as_the_user(tmp_path: Path) -> None:
    """uid, gid, groups (with a supplementary group, no 0), umask, cwd, session and environment are the user's."""
    require_root()
    group = f"ssdg{os.getpid() % 100000}"
    subprocess.run(["groupadd", group], check=True, capture_output=True)
    try:
        with users(1) as (alice,), system_daemon(tmp_path) as daemon:
            subprocess.run(["usermod", "-aG", group, alice.name], check=True, capture_output=True)
            client = _client(daemon, tmp_path, alice)
            try:
                assert client.request("env_list_request")["envs"] == []
                worker = _env_worker(daemon, alice)
                status = _status(worker.pid)
                expected_groups = sorted(os.getgrouplist(alice.name, alice.gid))
                assert status["Uid"].split() == [str(alice.uid)] * 4
                assert status["Gid"].split() == [str(alice.gid)] * 4
                assert sorted(int(g) for g in status["Groups"].split()) == expected_groups
                assert 0 not in expected_groups
                assert len(expected_groups) == 2  # own group and the supplementary one
                assert status["Umask"] == "0077"
                assert worker.cwd() == str(alice.home)
                assert os.getsid(worker.pid) == worker.pid != os.getsid(daemon.process.pid)
                environ = worker.environ()
                assert set(environ) <= ALLOWED_ENV
                assert environ["HOME"] == str(alice.home)
                assert environ["USER"] == environ["LOGNAME"] == alice.name
                assert "SSD_CONFIG_DIR" not in environ
            finally:
                client.close()
    finally:
        subprocess.run(["groupdel", group], check=False, capture_output=True)


def test_users_see_their_own_and_shared_envs_only(tmp_path: Path) -> None:
    """A's private venv (in a 0700 home) is invisible to B; a shared /opt-style prefix is seen by both."""
    require_root()
    with public_dir() as shared_top, users(2) as (alice, bob):
        shared = make_conda_style(make_venv(shared_top / "labenv"))
        subprocess.run(["chmod", "-R", "a+rX", str(shared_top)], check=True)
        private = alice.home / ".venvs" / "secret"
        subprocess.run(["runuser", "-u", alice.name, "--", "/usr/bin/python3", "-m", "venv", "--without-pip",
                        str(private)], check=True, capture_output=True, timeout=120)  # fmt: skip
        alice.home.chmod(0o700)
        with system_daemon(tmp_path, extra_env={"SSD_ENVS_ENVS_DIRS": str(shared_top)}) as daemon:
            seen = {}
            for user in (alice, bob):
                client = _client(daemon, tmp_path, user)
                try:
                    seen[user.name] = {e["prefix"]: e for e in client.request("env_list_request")["envs"]}
                finally:
                    client.close()
    assert set(seen[alice.name]) == {str(private), str(shared)}
    assert set(seen[bob.name]) == {str(shared)}
    assert seen[alice.name][str(private)]["writable"] is True
    assert seen[bob.name][str(shared)]["kind"] == "conda"
    assert seen[bob.name][str(shared)]["writable"] is False


def test_env_info_finds_by_name_and_explains_a_missing_env(tmp_path: Path) -> None:
    """env_info by name returns the versions read from disk; an unknown name is env_not_found."""
    require_root()
    with public_dir() as top, users(1) as (alice,), system_daemon(tmp_path) as daemon:
        spyder = conda_copy(heavy_venv(), top / "spyder-env")  # real spyder-kernels and ipykernel
        subprocess.run(["chmod", "-R", "a+rX", str(top)], check=True)
        (alice.home / ".conda").mkdir()
        (alice.home / ".conda" / "environments.txt").write_text(f"{spyder}\n")
        subprocess.run(["chown", "-R", f"{alice.name}:", str(alice.home / ".conda")], check=True)
        client = _client(daemon, tmp_path, alice)
        try:
            env = client.request("env_info_request", {"env": "spyder-env"})["env"]
            assert env["prefix"] == str(spyder)
            assert env["kind"] == "conda"
            assert env["spyder_kernels"].startswith("3.1.")
            assert env["spyder_ready"] is True
            assert env["writable"] is False  # root's copy: alice may read it, not change it
            with pytest.raises(RemoteError) as missing:
                client.request("env_info_request", {"env": "nope"})
            assert missing.value.code == ErrorCode.ENV_NOT_FOUND
        finally:
            client.close()


def test_idle_env_worker_is_retired_and_restarted_on_demand(tmp_path: Path) -> None:
    """With a 1 s idle timeout the worker exits by itself; the next request starts a new one."""
    require_root()
    with users(1) as (alice,), system_daemon(tmp_path, extra_env={"SSD_WORKERS_IDLE_TIMEOUT": "1"}) as daemon:
        client = _client(daemon, tmp_path, alice)
        try:
            client.request("env_list_request")
            first = _env_worker(daemon, alice)
            first.wait(timeout=15)  # retired: it ends without anyone killing it here
            assert client.request("env_list_request")["envs"] == []
            second = _env_worker(daemon, alice)
            assert second.pid != first.pid
        finally:
            client.close()
        assert "idle for 1s; stopping it" in daemon.log()

"""Environment administration through the daemon, as a real user, with the real tools (venv, pip)."""

from __future__ import annotations

import asyncio
import grp
import stat
import subprocess
from pathlib import Path
from typing import Any

import psutil
import pytest
from envfixtures import make_conda_style, make_venv, public_dir
from support.ci import require_root
from support.daemon import Daemon, new_client
from support.eventually import eventually
from users import User, login, system_daemon, users

from ssd.client import AsyncClient, Client
from ssd.errors import ErrorCode, RemoteError
from ssd.topics import ENV_PROGRESS, user_topic


def _client(daemon: Daemon, tmp: Path, user: User) -> Client:
    client = new_client(daemon, tmp / f"client-{user.name}", timeout=30)
    client.connect()
    login(client, user.name, user.password)
    return client


async def _operate(
    client: AsyncClient, user: str, msg_type: str, content: dict[str, Any], cancel_after: int = 0
) -> list[dict[str, Any]]:
    """Run one operation, collecting its progress events until it ends (cancelling after N lines if asked)."""
    events = client.events((user_topic(ENV_PROGRESS, user), "host_status"))
    # host_status comes every 0.5 s: once one arrived, the subscription (sent before it) is live.
    async with asyncio.timeout(30):
        while (await anext(events)).msg_type != "host_status":
            pass
    pending = asyncio.ensure_future(anext(events))
    seen: list[dict[str, Any]] = []
    try:
        operation = (await client.request(msg_type, content))["operation"]
        async with asyncio.timeout(240):
            while True:
                got = await pending
                pending = asyncio.ensure_future(anext(events))
                event = got.content
                if got.msg_type == "host_status" or event["operation"] != operation:
                    continue
                seen.append(event)
                if cancel_after and sum(1 for e in seen if e["line"]) == cancel_after:
                    reply = await client.request("env_cancel_request", {"operation": operation})
                    assert reply["state"] == "cancelled"
                if event["state"] != "running":
                    return seen
    finally:
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)
        await events.aclose()


def _tool_processes(user: User, worker_pids: set[int]) -> list[psutil.Process]:
    """*user*'s processes other than the daemon's workers; zombies are not left running (and may be an
    earlier test's, under a reused uid, that init left)."""
    return [
        p
        for p in psutil.process_iter(["uids", "status"])
        if p.info["uids"].real == user.uid and p.pid not in worker_pids and p.info["status"] != psutil.STATUS_ZOMBIE
    ]


def _tree(path: Path) -> set[str]:
    return {str(p) for p in path.rglob("*")} if path.exists() else set()


def test_create_install_remove_a_venv_with_progress(tmp_path: Path) -> None:
    """create (pip from the index), install into it, remove it: progress events arrive, the user owns the files."""
    require_root()
    with users(1) as (alice,), system_daemon(tmp_path) as daemon:
        client = _client(daemon, tmp_path, alice)
        try:
            created = client.run(
                _operate(client.aclient, alice.name, "env_create_request", {"name": "lab", "packages": ["six"]})
            )
            assert created[-1]["state"] == "done", created[-1]["line"]
            assert any("six" in (e["line"] or "") for e in created)
            prefix = alice.home / ".venvs" / "lab"
            assert prefix.stat().st_uid == alice.uid
            assert stat.S_IMODE(prefix.stat().st_mode) & 0o077 == 0  # umask 077 of the user's worker
            listed = {e["name"]: e for e in client.request("env_list_request")["envs"]}
            assert listed["lab"]["prefix"] == str(prefix)
            installed = client.run(
                _operate(client.aclient, alice.name, "env_install_request", {"env": "lab", "packages": ["tomli-w"]})
            )
            assert installed[-1]["state"] == "done", installed[-1]
            assert list(prefix.glob("lib/python3*/site-packages/tomli_w-*.dist-info"))
            removed = client.run(_operate(client.aclient, alice.name, "env_remove_request", {"env": "lab"}))
            assert removed[-1]["state"] == "done"
            assert not prefix.exists()
        finally:
            client.close()


def test_failing_install_reports_the_tools_message(tmp_path: Path) -> None:
    """pip's own error text comes back in the failed event."""
    require_root()
    with users(1) as (alice,), system_daemon(tmp_path) as daemon:
        venv = str(alice.home / ".venvs" / "v")
        argv = ["runuser", "-u", alice.name, "--", "/usr/bin/python3", "-m", "venv", venv]
        subprocess.run(argv, check=True, capture_output=True, timeout=120)
        client = _client(daemon, tmp_path, alice)
        try:
            spec = {"env": "v", "packages": ["ssd-no-such-package-xyz"]}
            events = client.run(_operate(client.aclient, alice.name, "env_install_request", spec))
        finally:
            client.close()
    assert events[-1]["state"] == "failed"
    assert "No matching distribution found for ssd-no-such-package-xyz" in events[-1]["line"]


def test_cancel_stops_the_tool_and_leaves_nothing(tmp_path: Path) -> None:
    """Cancelling a create during pip's download ends it as cancelled; no process of the user's tool is left."""
    require_root()
    with users(1) as (alice,), system_daemon(tmp_path) as daemon:
        client = _client(daemon, tmp_path, alice)
        try:
            spec = {"name": "big", "packages": ["numpy"]}
            events = client.run(_operate(client.aclient, alice.name, "env_create_request", spec, cancel_after=1))
            worker_pids = {p.pid for p in psutil.Process(daemon.process.pid).children()}
            # The tool's group is SIGKILLed when the cancel is answered; its members die a moment later.
            eventually(lambda: _tool_processes(alice, worker_pids) == [], "no process of the cancelled tool left")
        finally:
            client.close()
    assert events[-1]["state"] == "cancelled"
    assert not (alice.home / ".venvs" / "big").exists()


@pytest.mark.parametrize(
    ("msg_type", "content", "code"),
    [
        ("env_create_request", {"name": "a/b"}, "bad_request"),
        ("env_create_request", {"name": ".."}, "bad_request"),
        ("env_create_request", {"name": "-rf"}, "bad_request"),
        ("env_create_request", {"name": "x\u0000y"}, "bad_request"),
        ("env_create_request", {"name": "x;rm -rf ~"}, "bad_request"),
        ("env_create_request", {"name": "x" * 65}, "bad_request"),
        ("env_create_request", {"name": "ok", "packages": ["--index-url=http://evil"]}, "bad_request"),
        ("env_create_request", {"name": "ok", "packages": ["not a spec!"]}, "bad_request"),
        ("env_create_request", {"name": "ok", "packages": ["six @ https://x/six.whl"]}, "bad_request"),
        ("env_install_request", {"env": "/etc", "packages": ["six"]}, "env_not_found"),
        ("env_remove_request", {"env": "/usr"}, "env_not_found"),
        ("env_remove_request", {"env": "shared"}, "env_refused"),
        ("env_remove_request", {"env": "-rf"}, "bad_request"),  # refused as a name, as env create refuses it
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    tmp_path: Path, msg_type: str, content: dict[str, Any], code: str
) -> None:
    """Each bad request gets its error code, and the user's files and the shared env are unchanged."""
    require_root()
    with public_dir() as top, users(1) as (alice,), system_daemon(tmp_path) as daemon:
        shared = make_conda_style(make_venv(top / "shared"))  # root's, readable by all, not writable by alice
        subprocess.run(["chmod", "-R", "a+rX", str(top)], check=True)
        (alice.home / ".conda").mkdir()
        (alice.home / ".conda" / "environments.txt").write_text(f"{shared}\n")
        subprocess.run(["chown", "-R", f"{alice.name}:", str(alice.home / ".conda")], check=True)
        before = _tree(alice.home), _tree(shared)
        client = _client(daemon, tmp_path, alice)
        try:
            with pytest.raises(RemoteError) as refused:
                client.request(msg_type, content)
        finally:
            client.close()
        assert (refused.value.code, (_tree(alice.home), _tree(shared))) == (code, before)


STANDIN_CONDA = """#!/usr/bin/python3
# A stand-in for conda (conda itself cannot be installed here): records argv, prints progress.
import json, os, sys
with open(os.path.expanduser("~/conda-argv.json"), "w") as fh:
    json.dump(sys.argv[1:], fh)
print("Collecting package metadata (repodata.json): done")
print("Executing transaction: 100%")
"""


def test_conda_install_uses_the_users_conda_standin_executable(tmp_path: Path) -> None:
    """In a conda root's env, env_install runs that root's conda (a stand-in here) with -y -p PREFIX, no shell."""
    require_root()
    with users(1) as (alice,), system_daemon(tmp_path) as daemon:
        root = make_conda_style(alice.home / "miniconda3")
        env = make_conda_style(make_venv(root / "envs" / "analysis"))
        (root / "condabin").mkdir()
        conda = root / "condabin" / "conda"
        conda.write_text(STANDIN_CONDA)
        conda.chmod(0o755)
        subprocess.run(["chown", "-R", f"{alice.name}:", str(root)], check=True)
        client = _client(daemon, tmp_path, alice)
        try:
            content = {"env": "analysis", "packages": ["six>=1.16", "tomli-w"]}
            events = client.run(_operate(client.aclient, alice.name, "env_install_request", content))
        finally:
            client.close()
        argv = (alice.home / "conda-argv.json").read_text()
    assert events[-1]["state"] == "done", events[-1]
    assert any(e["percent"] == 100.0 and "Executing transaction" in (e["line"] or "") for e in events)
    assert argv == f'["install", "-y", "-p", "{env}", "six>=1.16", "tomli-w"]'


@pytest.mark.parametrize("setting", [{"SSD_ENVS_ADMINISTRATION": "false"}, {"SSD_ENVS_ADMIN_DENY_GROUPS": "GROUP"}])
def test_administration_can_be_turned_off(tmp_path: Path, setting: dict[str, str]) -> None:
    """Off for the host, or for a group the user is in: listing works, create is refused with not_allowed."""
    require_root()
    with users(1) as (alice,):
        group = grp.getgrgid(alice.gid).gr_name
        env = {key: value.replace("GROUP", group) for key, value in setting.items()}
        with system_daemon(tmp_path, extra_env=env) as daemon:
            client = _client(daemon, tmp_path, alice)
            try:
                assert client.request("env_list_request")["envs"] == []
                with pytest.raises(RemoteError) as refused:
                    client.request("env_create_request", {"name": "x"})
            finally:
                client.close()
        assert refused.value.code == ErrorCode.NOT_ALLOWED
        assert not (alice.home / ".venvs").exists()


def test_create_with_spyder_resolves_a_working_pair(tmp_path: Path) -> None:
    """env create --spyder 6.1 (real pip): spyder-kernels 3.1 with an IPython below 9.18, listed as serving 6.1.x."""
    require_root()
    with users(1) as (alice,), system_daemon(tmp_path) as daemon:
        client = _client(daemon, tmp_path, alice)
        try:
            content = {"name": "spy", "packages": [], "spyder": "6.1"}
            created = client.run(_operate(client.aclient, alice.name, "env_create_request", content))
            assert created[-1]["state"] == "done", created[-1]["line"]
            listed = {e["name"]: e for e in client.request("env_list_request")["envs"]}
        finally:
            client.close()
        spy = listed["spy"]
        assert (spy["spyder_ready"], spy["spyder_versions"], spy["spyder_problem"]) == (True, ["6.1.x"], None)
        assert spy["spyder_kernels"].startswith("3.1.")
        assert not spy["ipython"].startswith("9.18")
        # The import spyder-kernels runs when Spyder sets its traceback theme, as the user, in the new env.
        theme = "from IPython.utils.PyColorize import Theme, linux_theme, neutral_theme"
        argv = ["runuser", "-u", alice.name, "--", f"{spy['prefix']}/bin/python", "-c", theme]
        subprocess.run(argv, check=True, capture_output=True, timeout=60, cwd="/")


def test_conda_install_with_spyder_adds_the_ipython_pin(tmp_path: Path) -> None:
    """env install --spyder 6.1 into a conda env asks conda for spyder-kernels 3.1 and ipython<9.18."""
    require_root()
    with users(1) as (alice,), system_daemon(tmp_path) as daemon:
        root = make_conda_style(alice.home / "miniconda3")
        env = make_conda_style(make_venv(root / "envs" / "analysis"))
        (root / "condabin").mkdir()
        (root / "condabin" / "conda").write_text(STANDIN_CONDA)
        (root / "condabin" / "conda").chmod(0o755)
        subprocess.run(["chown", "-R", f"{alice.name}:", str(root)], check=True)
        client = _client(daemon, tmp_path, alice)
        try:
            content = {"env": "analysis", "packages": [], "spyder": "6.1.8"}
            events = client.run(_operate(client.aclient, alice.name, "env_install_request", content))
        finally:
            client.close()
        argv = (alice.home / "conda-argv.json").read_text()
    assert events[-1]["state"] == "done", events[-1]
    assert argv == f'["install", "-y", "-p", "{env}", "spyder-kernels<3.2.0,>=3.1.0", "ipython<9.18"]'

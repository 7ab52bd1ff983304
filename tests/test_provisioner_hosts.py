"""The provisioner across hosts and accounts: errors a notebook user can act on, a system-mode host, two namespaces.

Each test starts its own daemon; every kernel started is stopped.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from envfixtures import kernel_venv, make_conda_style, make_venv
from jupyter_client.manager import AsyncKernelManager, KernelManager
from netns import announcing_daemon, ctl, namespace_pair
from support.ci import require_root
from support.daemon import Daemon, new_client, start_daemon
from support.jupyterside import ME, TIMEOUT, Site, jupyter_env, remote_kernels
from users import login, system_daemon, users

from ssd.client.identity import client_keypair
from ssd.ctl.kernelspec import spec_document
from ssd.errors import SSDError

# -- errors a notebook user can act on --------------------------------------------------------


def _write_spec(jupyter: Path, name: str, host: str, env: dict[str, Any], kind: str = "ipykernel") -> None:
    folder = jupyter / "share" / "jupyter" / "kernels" / name
    folder.mkdir(parents=True)
    document = spec_document(host, host, ME, env, kind, name)
    (folder / "kernel.json").write_text(json.dumps(document))


def _start_error(name: str) -> str:
    """Start the kernelspec *name*: it must fail; return the message Jupyter would show."""

    async def attempt() -> str:
        km = AsyncKernelManager(kernel_name=name)
        with pytest.raises(SSDError) as failed:
            await km.start_kernel()
        assert not km.has_kernel
        return str(failed.value)

    return asyncio.run(attempt())


def test_launch_errors_say_what_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Untrusted host, unauthorized key, unreachable host, environment gone, package missing: each names its fix,
    the command on a line of its own (the HOST placeholder of the host's own messages filled in)."""
    envs = tmp_path / "envs"
    bare = make_conda_style(make_venv(envs / "bare"))  # Python, but no kernel package
    daemon = start_daemon(tmp_path, extra_env={"SSD_ENVS_ENVS_DIRS": str(envs), "SSD_ENVS_KNOWN_ROOTS": "false"})
    try:
        site = Site(daemon, tmp_path / "client", tmp_path / "jupyter", bare, "")
        jupyter_env(monkeypatch, site, tmp_path)
        gone = {"name": "gone", "prefix": str(envs / "gone"), "python": "3.11"}
        _write_spec(site.jupyter, "bare", daemon.host, {"name": "bare", "prefix": str(bare), "python": "3.11"})
        _write_spec(site.jupyter, "gone", daemon.host, gone)
        _write_spec(site.jupyter, "nowhere", "127.0.0.1:9", gone)

        untrusted = _start_error("bare")
        assert f"ssd-ctl trust {daemon.host}" in untrusted.splitlines()[-1]

        with new_client(daemon, site.client_dir):  # pins the host's key in this client's known hosts
            pass
        unauthorized = _start_error("bare")
        assert "not authorized" in unauthorized
        fix = f"    ssd-ctl login {daemon.host} --user {ME} && ssd-ctl copy-id {daemon.host}"
        assert unauthorized.splitlines()[-1] == fix

        # Nothing was started: an authorized client (another key) sees no kernel.
        with new_client(daemon, tmp_path / "admin") as admin:
            daemon.authorize(admin.aclient.identity.public)
            login(admin, ME)
            assert admin.kernel_list() == []

        daemon.authorize(client_keypair(site.client_dir).public)
        assert _start_error("nowhere").splitlines()[-1] == "    ssd-ctl info 127.0.0.1:9"
        missing_env = _start_error("gone")
        assert "No environment" in missing_env
        assert missing_env.splitlines()[-1] == f"    ssd-ctl kernelspec sync {daemon.host}"
        no_package = _start_error("bare")
        assert no_package.splitlines()[-1] == f"    ssd-ctl env install {daemon.host} bare ipykernel"
        asyncio.run(_no_kernels(daemon))
    finally:
        daemon.stop_and_check()


async def _no_kernels(daemon: Daemon) -> None:
    assert await remote_kernels(daemon) == []


# -- system mode: the kernel runs as the host's user --------------------------------------------


def test_kernel_runs_as_the_users_account_on_a_system_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A system-mode host: the spec records the user; with no session the provisioner logs in by key as them."""
    require_root()
    venv = kernel_venv()  # world-readable: the user's worker lists it from venv_dirs
    extra = {"SSD_ENVS_VENV_DIRS": str(venv.parent), "SSD_ENVS_KNOWN_ROOTS": "false"}
    with users(1) as (user,), system_daemon(tmp_path, extra_env=extra) as daemon:
        site = Site(daemon, tmp_path / "client", tmp_path / "jupyter", venv, "")
        daemon.authorize(site.ctl("keygen")["public_key"].encode(), user=user.name)
        site.ctl("login", daemon.host, "--key-only", "--trust", "--user", user.name)
        made = site.ctl(
            "kernelspec", "install", daemon.host, str(venv), "--prefix", str(site.jupyter), "--timeout", "60"
        )
        site.ctl("logout", daemon.host)
        jupyter_env(monkeypatch, site, tmp_path)
        km = KernelManager(kernel_name=made["name"])
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=TIMEOUT)
            printed: list[str] = []
            kc.execute_interactive(
                "import os, sys; print(os.getuid(), sys.prefix)",
                timeout=TIMEOUT,
                output_hook=lambda m: printed.append(m["content"].get("text", "")),
            )
            assert "".join(printed).split() == [str(user.uid), str(venv)]
        finally:
            kc.stop_channels()
            km.shutdown_kernel()
        assert asyncio.run(remote_kernels(daemon, user.name)) == []


# -- two hosts: Jupyter in network namespace B, the daemon and its kernels in A ---------------------

_JUPYTER_ON_B = """
import json, sys
from jupyter_client.manager import KernelManager
km = KernelManager(kernel_name=sys.argv[1])
km.start_kernel()
kc = km.client()
kc.start_channels()
printed = []
try:
    kc.wait_for_ready(timeout=60)
    code = "import subprocess, sys; print(sys.prefix); print(subprocess.run(['ip', '-o', '-4', 'addr'], "
    code += "capture_output=True, text=True).stdout)"
    kc.execute_interactive(code, timeout=60, output_hook=lambda m: printed.append(m["content"].get("text", "")))
finally:
    kc.stop_channels()
    info = km.get_connection_info()
    km.shutdown_kernel()
print(json.dumps({"ip": info["ip"], "printed": "".join(printed), "alive": km.is_alive()}))
"""


def test_jupyter_on_host_b_runs_a_kernel_on_host_a_found_by_name(tmp_path: Path) -> None:
    """Two network namespaces: the kernelspec names host A by its discovered instance name; the kernel runs in A."""
    require_root()
    venv = kernel_venv()
    name = f"jupa-{os.getpid()}"
    extra = {"SSD_ENVS_VENV_DIRS": str(venv.parent), "SSD_ENVS_KNOWN_ROOTS": "false"}
    with namespace_pair("j") as (a, b), announcing_daemon(tmp_path / "a", name, bind="*", netns=a, env=extra) as daemon:
        client_dir, jupyter = tmp_path / "client", tmp_path / "jupyter"

        def on_b(*args: str) -> dict[str, Any]:
            result = ctl(*args, "--json", "--timeout", "60", client_dir=client_dir, netns=b)
            assert result.returncode == 0, f"{result.stderr}\n{daemon.log()}"
            document: dict[str, Any] = json.loads(result.stdout)
            return document

        daemon.authorize(on_b("keygen")["public_key"].encode())
        on_b("login", name, "--key-only", "--trust")
        spec = on_b("kernelspec", "install", name, str(venv), "--prefix", str(jupyter))["name"]
        on_b("logout", name)
        env = {
            **os.environ,
            "SSD_CLIENT_DIR": str(client_dir),
            "JUPYTER_PATH": str(jupyter / "share" / "jupyter"),
            "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data"),
            "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        }
        run = subprocess.run(
            b.command(sys.executable, "-c", _JUPYTER_ON_B, spec),
            env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path,
        )  # fmt: skip
        assert run.returncode == 0, f"{run.stderr}\n{daemon.log()}"
        seen = json.loads(run.stdout.splitlines()[-1])
        assert seen["ip"] == a.address
        assert seen["printed"].split()[0] == str(venv)
        assert a.address in seen["printed"]
        assert b.address not in seen["printed"]
        assert seen["alive"] is False
        on_b("login", name, "--key-only")
        assert on_b("kernels", name)["kernels"] == []
        daemon.stop_and_check()

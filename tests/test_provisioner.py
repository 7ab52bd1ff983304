"""The Jupyter provisioner with a real jupyter_client, nbclient, real kernels and real daemons.

The module's user-mode daemon serves root's kernels in a conda-style copy of the
cached kernel venv; its kernelspec is written by ``ssd-ctl kernelspec install``
into a prefix that JUPYTER_PATH names, and the client then logs out, so every
launch logs in by its authorized key as Jupyter would. Every test stops the
kernels it starts; a fixture fails a test that leaves one behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from envfixtures import conda_copy, kernel_venv, make_conda_style, make_venv
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager, KernelManager
from nbclient import NotebookClient
from netns import announcing_daemon, ctl, namespace_pair
from support.ci import require_root
from support.daemon import Daemon, new_client, start_daemon
from users import login, system_daemon, users

from ssd.client import AsyncClient
from ssd.client.identity import client_keypair
from ssd.ctl.kernelspec import spec_document
from ssd.errors import ErrorCode, SSDError
from ssd.provisioner import SSDProvisioner
from ssd.provisioner.hostlink import for_kernel_manager
from ssd.replies import KernelDescription

CTL = [sys.executable, "-m", "ssd.ctl.main"]
ME = pwd.getpwuid(os.geteuid()).pw_name
TIMEOUT = 60.0


@dataclass
class Site:
    """A daemon, a client directory whose key it authorizes, an environment and the kernelspec for it."""

    daemon: Daemon
    client_dir: Path
    jupyter: Path  # the prefix the kernelspec went into
    prefix: Path  # the environment on the host
    spec: str  # the kernelspec's name

    def ctl(self, *args: str) -> dict[str, Any]:
        """``ssd-ctl ARGS --json`` with this client directory; exit 0 required."""
        env = {**os.environ, "SSD_CLIENT_DIR": str(self.client_dir)}
        result = subprocess.run(
            [*CTL, *args, "--json"], env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )
        assert result.returncode == 0, result.stderr
        document: dict[str, Any] = json.loads(result.stdout)
        return document


def jupyter_env(monkeypatch: pytest.MonkeyPatch, site: Site, tmp: Path) -> None:
    """This process is the Jupyter side: its ssd client directory, kernelspec path and runtime dir."""
    monkeypatch.setenv("SSD_CLIENT_DIR", str(site.client_dir))
    monkeypatch.setenv("JUPYTER_PATH", str(site.jupyter / "share" / "jupyter"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp / "jupyter-data"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp / "jupyter-runtime"))


@pytest.fixture(scope="module")
def module_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A daemon that finds the environment ``sci``; its kernelspec; the client logged out again."""
    tmp = tmp_path_factory.mktemp("provisioner")
    prefix = conda_copy(kernel_venv(), tmp / "envs" / "sci")
    extra = {
        "SSD_ENVS_ENVS_DIRS": str(tmp / "envs"),
        "SSD_ENVS_KNOWN_ROOTS": "false",
        "SSD_KERNELS_STOP_ON_EXIT": "true",  # a safety net only: the tests stop their kernels
    }
    daemon = start_daemon(tmp, extra_env=extra)
    try:
        site = Site(daemon, tmp / "client", tmp / "jupyter", prefix, "")
        daemon.authorize(site.ctl("keygen")["public_key"].encode())
        site.ctl("login", daemon.host, "--key-only", "--trust")
        made = site.ctl("kernelspec", "install", daemon.host, "sci", "--prefix", str(site.jupyter), "--timeout", "60")
        site.spec = made["name"]
        site.ctl("logout", daemon.host)
        yield site
    finally:
        daemon.stop_and_check()


@pytest.fixture
def site(module_site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """The module's site as this test's Jupyter side; fails the test if a kernel is left on the host."""
    jupyter_env(monkeypatch, module_site, tmp_path)
    yield module_site
    left = asyncio.run(remote_kernels(module_site.daemon))
    for kernel in left:
        asyncio.run(_shutdown(module_site.daemon, kernel.kernel_id))
    assert not left, f"kernels left running on the host: {left}"


async def remote_kernels(daemon: Daemon, user: str | None = None) -> list[KernelDescription]:
    """The kernels on the host, asked with this process's (authorized) client key."""
    async with AsyncClient(daemon.host) as client:
        try:
            return await client.kernel_list()
        except SSDError as exc:
            if exc.code != ErrorCode.NOT_AUTHORIZED:
                raise
        await client.login(user or ME)
        return await client.kernel_list()


async def _shutdown(daemon: Daemon, kernel_id: str) -> None:
    async with AsyncClient(daemon.host) as client:
        await client.kernel_shutdown(kernel_id)


async def run_cell(kc: AsyncKernelClient, code: str) -> tuple[dict[str, Any], str]:
    """Execute *code*; return the execute_reply content and what it printed."""
    printed: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            printed.append(msg["content"]["text"])

    reply = await kc.execute_interactive(code, timeout=TIMEOUT, output_hook=hook)
    return reply["content"], "".join(printed)


async def _reply_to(kc: AsyncKernelClient, msg_id: str) -> dict[str, Any]:
    while True:
        msg = await kc.get_shell_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") == msg_id:
            content: dict[str, Any] = msg["content"]
            return content


async def _wait_busy(kc: AsyncKernelClient, msg_id: str) -> None:
    """Wait until the kernel runs the cell *msg_id* (its execute_input on iopub)."""
    while True:
        msg = await kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["msg_type"] == "execute_input" and msg["parent_header"].get("msg_id") == msg_id:
            return


def test_encryption_required_accepts_the_ssd_kernelspec(site: Site) -> None:
    """The spec of a curve host declares supported_encryption; a KernelManager that requires transport
    encryption starts it, gets the relay's CURVE keys and runs code."""
    spec = json.loads((site.jupyter / "share" / "jupyter" / "kernels" / site.spec / "kernel.json").read_text())
    assert spec["metadata"]["supported_encryption"] == ["curve"]
    km = KernelManager(kernel_name=site.spec, transport_encryption="required")
    km.start_kernel()
    try:
        assert km.get_connection_info()["curve_publickey"]
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=TIMEOUT)
            reply = kc.execute_interactive("x = 6 * 7", timeout=TIMEOUT)
            assert reply["content"]["status"] == "ok"
        finally:
            kc.stop_channels()
    finally:
        km.shutdown_kernel()


def test_kernel_manager_start_execute_interrupt_restart_shutdown(site: Site) -> None:
    """AsyncKernelManager on the kernelspec: the whole lifecycle of a kernel that runs on the host."""

    async def scenario() -> None:
        km = AsyncKernelManager(kernel_name=site.spec)
        await km.start_kernel()
        provisioner = km.provisioner
        assert isinstance(provisioner, SSDProvisioner)
        remote_id = provisioner.remote_id
        assert [k.kernel_id for k in await remote_kernels(site.daemon)] == [remote_id]
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=TIMEOUT)
            info = (await kc.kernel_info(reply=True))["content"]
            assert (info["status"], info["language_info"]["name"]) == ("ok", "python")

            reply, printed = await run_cell(kc, "import os, sys\nkept = 1\nprint(os.getuid(), sys.prefix)")
            assert reply["status"] == "ok"
            assert printed.split() == [str(os.getuid()), str(site.prefix)]

            msg_id = kc.execute("import time; time.sleep(60)")
            await _wait_busy(kc, msg_id)
            await km.interrupt_kernel()
            assert (await _reply_to(kc, msg_id))["ename"] == "KeyboardInterrupt"

            # A polite restart (Jupyter's restart button): the KernelManager sends shutdown_request, the
            # provisioner has the host restart the kernel in place (same ssd kernel, ports and key), so
            # this very client keeps working, also when the kernel has already exited by then (the host
            # keeps a dead kernel listed, restartable, for a minute).
            before = km.get_connection_info()
            await km.restart_kernel()
            assert provisioner.remote_id == remote_id
            assert km.get_connection_info() == before
            await kc.wait_for_ready(timeout=TIMEOUT)
            reply, printed = await run_cell(kc, "print('kept' in dir())")
            assert printed.strip() == "False"
            (listed,) = await remote_kernels(site.daemon)
            assert (listed.kernel_id, listed.restarts) == (remote_id, 1)

            # restart(now=True) kills first without saying that a restart follows (only cleanup hears it):
            # the host kills the process but keeps the kernel, which is then restarted in place, so the
            # client opened before keeps working on the same ports and key.
            await run_cell(kc, "kept = 2")
            await km.restart_kernel(now=True)
            assert provisioner.remote_id == remote_id
            assert km.get_connection_info() == before
            await kc.wait_for_ready(timeout=TIMEOUT)
            reply, printed = await run_cell(kc, "print('kept' in dir(), 6 * 7)")
            assert printed.split() == ["False", "42"]
            (listed,) = await remote_kernels(site.daemon)
            assert (listed.kernel_id, listed.restarts) == (remote_id, 2)
        finally:
            kc.stop_channels()

        await km.shutdown_kernel()
        assert not await km.is_alive()
        assert await remote_kernels(site.daemon) == []

    asyncio.run(scenario())


def test_blocking_kernel_manager_and_shutdown_now(site: Site) -> None:
    """The blocking KernelManager (jupyter_client's sync API) works as well; shutdown(now=True) stops it."""
    km = KernelManager(kernel_name=site.spec)
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=TIMEOUT)
        reply = kc.execute_interactive("21 * 2", timeout=TIMEOUT)
        assert reply["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
    km.shutdown_kernel(now=True)
    assert not km.is_alive()
    assert asyncio.run(remote_kernels(site.daemon)) == []


def test_nbclient_runs_a_notebook_on_the_host(site: Site, tmp_path: Path) -> None:
    """nbclient executes a notebook through the kernelspec: prints, a rich display and a result come back."""
    cells = [
        nbformat.v4.new_code_cell("import os, sys\nvalue = 6 * 7"),
        nbformat.v4.new_markdown_cell("Not run: *markdown*."),
        nbformat.v4.new_code_cell("print(value)"),
        nbformat.v4.new_code_cell("from IPython.display import HTML, display\ndisplay(HTML('<b>ssd</b> says hi'))"),
        nbformat.v4.new_code_cell("sys.prefix"),
    ]
    notebook = nbformat.v4.new_notebook(cells=cells)
    client = NotebookClient(notebook, kernel_name=site.spec, timeout=int(TIMEOUT))
    client.execute(cwd=str(tmp_path))  # a local folder: the provisioner starts the kernel in the remote home
    first, _, printed, shown, result = notebook.cells
    assert first.outputs == []
    assert [(o.output_type, o.text) for o in printed.outputs] == [("stream", "42\n")]
    (display,) = shown.outputs
    assert display.output_type == "display_data"
    assert display.data["text/html"] == "<b>ssd</b> says hi"
    (value,) = result.outputs
    assert value.output_type == "execute_result"
    assert value.data["text/plain"] == repr(str(site.prefix))
    assert asyncio.run(remote_kernels(site.daemon)) == []


def test_a_notebook_folder_the_host_lacks_leaves_the_kernel_in_the_home(site: Site, tmp_path: Path) -> None:
    """Jupyter passes the notebook's folder (cwd): where the host has no such folder for the user, the
    kernel starts in the user's home there, as before, instead of failing."""
    here = tmp_path / "notebooks"
    here.mkdir()

    async def scenario() -> None:
        km = AsyncKernelManager(kernel_name=site.spec)
        await km.start_kernel(cwd=str(here))
        (kernel,) = await remote_kernels(site.daemon)
        assert kernel.cwd == str(here)  # the same machine: the folder exists there
        await km.shutdown_kernel(now=True)
        km = AsyncKernelManager(kernel_name=site.spec)
        await km.start_kernel(cwd=str(here / "not-on-the-host"))
        (kernel,) = await remote_kernels(site.daemon)
        assert kernel.cwd not in (str(here), str(here / "not-on-the-host"))
        assert kernel.cwd == os.environ.get("HOME", str(Path.home()))  # the daemon's user: this one
        await km.shutdown_kernel(now=True)

    asyncio.run(scenario())


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


def test_unknown_config_keys_are_ignored_with_a_log_line() -> None:
    """A kernelspec from a newer ssd (more config keys) still loads; traitlets does not warn."""
    provisioner = SSDProvisioner(host="h", env="/e", kind="spyder", future_option=1)
    assert (provisioner.host, provisioner.env, provisioner.kind) == ("h", "/e", "spyder")


def test_provisioner_info_round_trip() -> None:
    """get_provisioner_info keeps host and the ssd kernel id; load_provisioner_info restores them."""

    async def scenario() -> None:
        first = SSDProvisioner(host="labpc", env="/opt/envs/sci", kind="ipykernel", user="alice")
        first.kernel_id = "jupyter-id"
        first.remote_id = "ssd-id"
        first.connection_info = for_kernel_manager({"shell_port": 1, "key": "secret", "ip": "10.0.0.1"})
        info = await first.get_provisioner_info()
        json.dumps(info)  # storable as JSON
        second = SSDProvisioner()
        await second.load_provisioner_info(json.loads(json.dumps(info)))
        assert (second.host, second.env, second.kind, second.user) == ("labpc", "/opt/envs/sci", "ipykernel", "alice")
        assert (second.kernel_id, second.remote_id, second.has_process) == ("jupyter-id", "ssd-id", True)
        assert dict(second.connection_info)["key"] == b"secret"

    asyncio.run(scenario())


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

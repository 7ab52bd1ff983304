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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from envfixtures import conda_copy, kernel_venv
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager, KernelManager
from nbclient import NotebookClient
from support.daemon import start_daemon
from support.jupyterside import TIMEOUT, Site, jupyter_env, remote_kernels, shutdown

from ssd.provisioner import SSDProvisioner
from ssd.provisioner.hostlink import for_kernel_manager


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
        asyncio.run(shutdown(module_site.daemon, kernel.kernel_id))
    assert not left, f"kernels left running on the host: {left}"


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

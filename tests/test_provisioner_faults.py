"""The provisioner when things go wrong: a crashed kernel restarts in place for the client that stays
connected; a host that refuses the key is said once, not every poll; a restart whose environment is gone
says which and what to run. Real daemon, real kernels, jupyter_client's own restarter.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.ioloop.manager import AsyncIOLoopKernelManager
from jupyter_client.manager import AsyncKernelManager
from jupyterhost import Host, make_host

from ssd.client import AsyncClient
from ssd.errors import SSDError
from ssd.provisioner import SSDProvisioner
from ssd.replies import KernelDescription

TIMEOUT = 60.0


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    """The daemon and the kernelspec of ``sci``."""
    made = make_host(tmp_path_factory.mktemp("provisioner-faults"))
    yield made
    made.daemon.stop_and_check()


@pytest.fixture
def jupyter(host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Host]:
    """This process as the Jupyter side of *host*; fails a test that leaves a kernel on the host."""
    monkeypatch.setenv("SSD_CLIENT_DIR", str(host.client_dir))
    monkeypatch.setenv("JUPYTER_PATH", str(host.jupyter / "share" / "jupyter"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    yield host
    left = asyncio.run(_remote_kernels(host))
    assert not left, f"kernels left running on the host: {left}"


async def _remote_kernels(host: Host) -> list[KernelDescription]:
    async with AsyncClient(host.daemon.host) as client:
        await client.login(_me())
        return await client.kernel_list()


def _me() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


async def _printed(kc: AsyncKernelClient, code: str) -> str:
    printed: list[str] = []
    reply = await kc.execute_interactive(
        code, timeout=TIMEOUT, output_hook=lambda m: printed.append(m["content"].get("text", ""))
    )
    assert reply["content"]["status"] == "ok", reply["content"]
    return "".join(printed)


class _RestartWatcher(AsyncIOLoopKernelManager):
    """jupyter_client's manager, telling when a restart (its restarter's) has returned."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.restart_done = asyncio.Event()

    async def restart_kernel(self, now: bool = False, newports: bool = False, **kw: Any) -> None:  # type: ignore[override]  # jupyter_client types it sync
        """jupyter_client's restart, then the event."""
        await super().restart_kernel(now=now, newports=newports, **kw)
        self.restart_done.set()


def test_a_crash_restarts_in_place_for_the_client_that_stays(jupyter: Host) -> None:
    """os._exit(1) in a cell: jupyter_client's restarter restarts the kernel; the host restarts the same
    kernel on the same ports and key, so the client opened before runs the next cell."""

    async def scenario() -> None:
        km = _RestartWatcher(kernel_name=jupyter.spec)
        restarted = asyncio.Event()
        await km.start_kernel()
        km.add_restart_callback(restarted.set, "restart")
        provisioner = km.provisioner
        assert isinstance(provisioner, SSDProvisioner)
        remote_id, before = provisioner.remote_id, km.get_connection_info()
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=TIMEOUT)
            assert (await _printed(kc, "print(6 * 7)")).strip() == "42"
            kc.execute("import os; os._exit(1)")
            await asyncio.wait_for(restarted.wait(), TIMEOUT)
            await kc.wait_for_ready(timeout=TIMEOUT)
            assert (await _printed(kc, "print('again')")).strip() == "again"
            # The kernel answers before jupyter_client's restart has returned; a shutdown meanwhile would
            # collide with it inside jupyter_client (both settle its ready future: InvalidStateError).
            await asyncio.wait_for(km.restart_done.wait(), TIMEOUT)
            assert provisioner.remote_id == remote_id
            assert km.get_connection_info() == before
        finally:
            kc.stop_channels()
            await km.shutdown_kernel()

    asyncio.run(scenario())


def test_a_poll_that_meets_a_shutdown_answers_running(jupyter: Host) -> None:
    """jupyter_client's async restarter polls without checking for a shutdown begun meanwhile: a poll whose
    answer comes back after the shutdown began says "running", so the restarter does not restart a kernel
    that is being shut down; the shutdown's own polls see the end."""

    async def scenario() -> None:
        km = AsyncKernelManager(kernel_name=jupyter.spec)
        await km.start_kernel()
        provisioner = km.provisioner
        assert isinstance(provisioner, SSDProvisioner)
        shutdown: asyncio.Future[None] | None = None
        try:
            os.kill(await _kernel_pid(jupyter, provisioner.remote_id), signal.SIGKILL)
            while await _remote_state(jupyter, provisioner.remote_id) != "dead":  # noqa: ASYNC110 (on the host)
                await asyncio.sleep(0.1)
            polled = asyncio.create_task(provisioner.poll())
            await asyncio.sleep(0)  # the poll has asked the host; its answer cannot have been read yet
            assert not polled.done()
            shutdown = asyncio.ensure_future(km.shutdown_kernel())
            await asyncio.sleep(0)  # the shutdown's first step marks the manager as shutting down
            assert km.shutting_down
            assert await polled is None
            await shutdown
            assert await provisioner.poll() == 1
        finally:
            if shutdown is None:
                await km.shutdown_kernel(now=True)

    asyncio.run(scenario())


async def _kernel_pid(host: Host, kernel_id: str) -> int:
    async with AsyncClient(host.daemon.host) as client:
        await client.login(_me())
        return (await client.kernel_info(kernel_id)).kernel.pid


async def _remote_state(host: Host, kernel_id: str) -> str:
    return {k.kernel_id: k.state for k in await _remote_kernels(host)}[kernel_id]


def test_a_refused_key_is_said_once_not_every_poll(jupyter: Host, caplog: pytest.LogCaptureFixture) -> None:
    """No session and the key no longer authorized: poll counts the kernel as running and warns once;
    when the key works again, one line says so and the warnings stay away."""
    keys = jupyter.daemon.config_dir / "authorized_keys.d" / _me()
    authorized = keys.read_bytes()

    async def scenario() -> None:
        km = AsyncKernelManager(kernel_name=jupyter.spec)
        await km.start_kernel()
        provisioner = km.provisioner
        assert isinstance(provisioner, SSDProvisioner)
        try:
            keys.write_bytes(b"")
            jupyter.ctl("logout", jupyter.daemon.host)
            with caplog.at_level(logging.INFO):
                caplog.clear()
                for _ in range(4):
                    assert await provisioner.poll() is None
                warned = [r for r in caplog.records if r.levelno == logging.WARNING]
                assert len(warned) == 1, [r.getMessage() for r in warned]
                assert "not authorized" in warned[0].getMessage()
                assert provisioner.remote_id in warned[0].getMessage()
                keys.write_bytes(authorized)
                caplog.clear()
                deadline = time.monotonic() + 30  # the host may throttle this key's logins for a while
                while not caplog.records and time.monotonic() < deadline:
                    assert await provisioner.poll() is None
                    await asyncio.sleep(0.2)
                assert await provisioner.poll() is None
                said = [(r.levelno, r.getMessage()) for r in caplog.records if "ssd-provisioner" in r.getMessage()]
                assert said == [(logging.INFO, "ssd-provisioner: the host answers again")]
        finally:
            keys.write_bytes(authorized)
            await km.shutdown_kernel()

    asyncio.run(scenario())


def test_a_restart_whose_environment_is_gone_names_it_and_the_fix(
    jupyter: Host, caplog: pytest.LogCaptureFixture
) -> None:
    """The environment vanished under a running kernel: Jupyter's restart fails, the log names the
    environment and ``ssd-ctl kernelspec sync HOST`` (on a line of its own) once; the kernel is listed dead
    on the host, not lost."""
    envs = jupyter.daemon.config_dir.parent / "envs"
    prefix = envs / "sci"

    async def scenario() -> None:
        km = AsyncKernelManager(kernel_name=jupyter.spec)
        await km.start_kernel()
        provisioner = km.provisioner
        assert isinstance(provisioner, SSDProvisioner)
        moved = prefix.rename(envs.parent / "sci-moved-away")
        try:
            with caplog.at_level(logging.INFO), pytest.raises(SSDError, match="kernelspec sync"):
                await km.restart_kernel()
            # Said once (jupyter_client logs the failed start), not also as a warning on the way.
            (said,) = [r.getMessage() for r in caplog.records if "ssd could not" in r.getMessage()]
            assert said.startswith(f"ssd could not restart a kernel on {jupyter.daemon.host} (environment sci).\n")
            assert "Is it gone?" in said
            assert str(prefix) in said
            assert said.endswith(f":\n    ssd-ctl kernelspec sync {jupyter.daemon.host}"), said
            listed = {k.kernel_id: k.state for k in await _remote_kernels(jupyter)}
            assert listed == {provisioner.remote_id: "dead"}
        finally:
            moved.rename(prefix)
            await km.shutdown_kernel(now=True)

    asyncio.run(scenario())

"""The Jupyter side of provisioner tests: a daemon, a client directory it authorizes, a kernelspec, a runtime."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ssd.client import AsyncClient
from ssd.errors import ErrorCode, SSDError
from ssd.replies import KernelDescription
from support.daemon import Daemon

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


async def shutdown(daemon: Daemon, kernel_id: str) -> None:
    """Shut the kernel down with this process's client key."""
    async with AsyncClient(daemon.host) as client:
        await client.kernel_shutdown(kernel_id)

"""An ssd host for Jupyter tests: a user-mode daemon with environments, a client directory it authorizes,
and an ssd kernelspec written by ``ssd-ctl kernelspec install`` (the client logged out again, so every
launch logs in by its key as Jupyter would)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import Daemon, start_daemon
from envfixtures import conda_copy, kernel_venv

CTL = [sys.executable, "-m", "ssd.ctl.main"]


@dataclass
class Host:
    """A daemon with the environment ``sci``, a client directory it authorizes and a kernelspec for it."""

    daemon: Daemon
    client_dir: Path
    jupyter: Path  # the prefix the kernelspec went into
    spec: str

    def ctl(self, *args: str) -> dict[str, Any]:
        """``ssd-ctl ARGS --json`` with this client directory; exit 0 required."""
        return ctl(self.client_dir, *args)


def ctl(client_dir: Path, *args: str) -> dict[str, Any]:
    """``ssd-ctl ARGS --json`` with *client_dir*; exit 0 required."""
    env = {**os.environ, "SSD_CLIENT_DIR": str(client_dir)}
    done = subprocess.run(
        [*CTL, *args, "--json"], env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def make_host(tmp: Path, extra_env: dict[str, str] | None = None) -> Host:
    """Start the daemon (stop it with ``host.daemon.stop_and_check()``) and write the kernelspec for ``sci``."""
    conda_copy(kernel_venv(), tmp / "envs" / "sci")
    env = {"SSD_ENVS_ENVS_DIRS": str(tmp / "envs"), "SSD_ENVS_KNOWN_ROOTS": "false", **(extra_env or {})}
    daemon = start_daemon(tmp, extra_env=env)
    try:
        client_dir, jupyter = tmp / "client", tmp / "jupyter"
        daemon.authorize(ctl(client_dir, "keygen")["public_key"].encode())
        ctl(client_dir, "login", daemon.host, "--key-only", "--trust")
        spec = ctl(client_dir, "kernelspec", "install", daemon.host, "sci", "--prefix", str(jupyter))["name"]
        ctl(client_dir, "logout", daemon.host)
    except BaseException:
        daemon.stop_and_check()
        raise
    return Host(daemon, client_dir, jupyter, spec)

"""A user-mode daemon and an ssd-ctl client directory logged in to it, for tests that run ssd-ctl as a person does."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from envfixtures import conda_copy, kernel_venv
from jupyter_client.blocking.client import BlockingKernelClient

from ssd.kernels.connection import CLASSIC_KEYS
from support.daemon import Daemon, start_daemon

CTL = [sys.executable, "-m", "ssd.ctl.main"]


@dataclass
class Host:
    """The module's daemon, a logged-in client directory, this client's Jupyter runtime dir, the env."""

    daemon: Daemon
    client_dir: Path
    runtime: Path
    prefix: Path
    tmp: Path

    def ctl(
        self, *args: str, path: str | None = None, extra: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ssd-ctl as a person would, without a terminal; *path* replaces PATH, *extra* adds variables."""
        env = {**os.environ, "SSD_CLIENT_DIR": str(self.client_dir), "JUPYTER_RUNTIME_DIR": str(self.runtime)}
        env.update(extra or {})
        if path is not None:
            env["PATH"] = path
        return subprocess.run(
            [*CTL, *args], env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )

    def json(self, *args: str, **options: Any) -> Any:
        """Run ssd-ctl ... --json, require exit 0, return the document."""
        result = self.ctl(*args, "--json", **options)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def kernels(self) -> list[dict[str, Any]]:
        """This user's kernels, as ssd-ctl kernels --json lists them."""
        listed: list[dict[str, Any]] = self.json("kernels", self.daemon.host)["kernels"]
        return listed


@contextmanager
def serving(tmp: Path) -> Iterator[Host]:
    """A daemon that finds the env ``sci`` in TMP, and a client logged in to it by its authorized key."""
    prefix = conda_copy(kernel_venv(), tmp / "envs" / "sci")
    # Plain transport: the classic file Spyder accepts reaches the kernel itself (curve needs the tunnel).
    extra = {
        "SSD_ENVS_ENVS_DIRS": str(tmp / "envs"),
        "SSD_KERNELS_STOP_ON_EXIT": "true",  # a safety net only
        "SSD_KERNELS_TRANSPORT": "plain",
    }
    daemon = start_daemon(tmp, extra_env=extra)
    host = Host(daemon, tmp / "client", tmp / "runtime", prefix, tmp)
    try:
        made = host.json("keygen")
        daemon.authorize(made["public_key"].encode())
        assert host.json("login", daemon.host, "--key-only", "--trust")["method"] == "key"
        yield host
    finally:
        daemon.stop_and_check()


def stop_left_kernels(host: Host) -> None:
    """Stop the kernels a failed test left behind (tests stop their own)."""
    for kernel in host.kernels():
        host.ctl("stop", host.daemon.host, kernel["kernel_id"])


@contextmanager
def kernel_client(connection_file: Path) -> Iterator[BlockingKernelClient]:
    """A jupyter_client connected with nothing but the connection file ssd-ctl wrote."""
    client = BlockingKernelClient()
    client.load_connection_file(str(connection_file))
    client.hb_channel.time_to_dead = 5.0  # not jupyter_client's 1 s: a race on a loaded machine (see kerneltools)
    client.start_channels()
    try:
        client.wait_for_ready(timeout=30)
        yield client
    finally:
        client.stop_channels()
        client.context.destroy(linger=0)


def run_cell(client: BlockingKernelClient, code: str) -> tuple[str, dict[str, Any]]:
    """Execute *code*; return what it printed and the execute_reply content."""
    printed: list[str] = []

    def collect(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            printed.append(msg["content"]["text"])

    reply = client.execute_interactive(code, timeout=30, output_hook=collect)
    return "".join(printed), reply["content"]


def process_gone(pid: int) -> bool:
    """The kernel process has exited and was reaped (no zombie left)."""
    return not psutil.pid_exists(pid)


def check_classic_file(path: Path) -> dict[str, Any]:
    """The file has exactly the keys Spyder's "Connect to an existing kernel" dialog accepts, mode 0600."""
    info: dict[str, Any] = json.loads(path.read_text())
    assert set(info) == set(CLASSIC_KEYS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return info


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    """Nothing ssd-ctl printed is a Python traceback."""
    assert "Traceback" not in result.stderr + result.stdout

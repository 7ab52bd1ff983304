"""An ssd host for Jupyter tests: a user-mode daemon with environments, a client directory it authorizes,
and an ssd kernelspec written by ``ssd-ctl kernelspec install`` (the client logged out again, so every
launch logs in by its key as Jupyter would); and a real Jupyter Server (with JupyterLab) using it."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from envfixtures import conda_copy, kernel_venv
from support.daemon import Daemon, logged_in_client, start_daemon
from support.eventually import eventually

from ssd.client import Client

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


class JupyterServer:
    """``jupyter server`` as a subprocess on a free loopback port, with a token, stdin not a terminal."""

    def __init__(self, host: Host, tmp: Path, *, lease: float = 30.0) -> None:
        self.token = secrets.token_hex(16)
        self.env = {
            **os.environ,
            "SSD_CLIENT_DIR": str(host.client_dir),
            "JUPYTER_PATH": str(host.jupyter / "share" / "jupyter"),
            "JUPYTER_CONFIG_DIR": str(tmp / "jupyter-config"),
            "JUPYTER_DATA_DIR": str(tmp / "jupyter-data"),
            "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter-runtime"),
        }
        self.tmp, self.lease = tmp, lease
        self.log_path = tmp / "jupyter-server.log"
        # The free port is found by binding and closing: another process (a kernel's relay) may take it before
        # the server binds it. Then the server exits (port_retries=0) or another program answers: start again.
        for _ in range(3):
            if self._start():
                return
        raise AssertionError(f"the Jupyter server did not start:\n{self.log_path.read_text()}")

    def _start(self) -> bool:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        args = [
            *(f"--ServerApp.{k}={v}" for k, v in (("ip", "127.0.0.1"), ("port", self.port), ("port_retries", 0))),
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.tmp}",
            f"--SSDProvisioner.lease={self.lease}",
            *(["--ServerApp.allow_root=True"] if os.geteuid() == 0 else []),
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "jupyter_server", *args],
                env=self.env, cwd=self.tmp, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip
        if eventually(self._answers, "the Jupyter server answering", timeout=40, interval=0.2) == "ours":
            return True
        self.stop()
        return False

    def _answers(self) -> str | None:
        """'ours' once the server answers; 'taken' when its port was taken (None: not yet)."""
        if self.process.poll() is not None:
            return "taken" if "is already in use" in self.log_path.read_text() else _died(self.log_path)
        try:
            self.request("GET", "/api/status")
        except http.client.HTTPException:  # another program on the port (not HTTP, or not Jupyter's)
            return "taken"
        except OSError:
            return None
        return "ours"

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One REST call with the token; the decoded JSON answer."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=90) as answer:
            return json.loads(answer.read() or b"null")

    def failed_request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """A REST call that must fail: its HTTP status and decoded JSON answer."""
        with pytest.raises(urllib.error.HTTPError) as failed:
            self.request(method, path, body)
        return failed.value.code, json.loads(failed.value.read())

    def log_records(self, text: str) -> list[str]:
        """The server log's records (lines that start with ``[``) that contain *text*."""
        return [line for line in self.log_path.read_text().splitlines() if line.startswith("[") and text in line]

    def stop(self) -> None:
        """Make sure it is gone (after a test that failed before killing it)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)


def write_spec(site: Host, name: str, display_name: str = "", **config: str) -> str:
    """A copy of the host's ssd kernelspec named *name*, with *config* changed in its provisioner config."""
    kernels = site.jupyter / "share" / "jupyter" / "kernels"
    document = json.loads((kernels / site.spec / "kernel.json").read_text())
    document["metadata"]["kernel_provisioner"]["config"].update(config)
    document["display_name"] = display_name or document["display_name"]
    (kernels / name).mkdir(exist_ok=True)
    (kernels / name / "kernel.json").write_text(json.dumps(document))
    return name


@contextmanager
def host_admin(host: Host, tmp: Path) -> Iterator[Client]:
    """Another client of the host's user, to look at the host; shuts down whatever a test left there."""
    client = logged_in_client(host.daemon, tmp / "admin", timeout=60)
    try:
        yield client
        for kernel in client.kernel_list():
            client.kernel_shutdown(kernel.kernel_id)
    finally:
        client.close()


def _died(log: Path) -> str:
    raise AssertionError(f"the Jupyter server exited:\n{log.read_text()}")

"""A real Jupyter Server with an ssd kernelspec: its kernel dies with it, as a local kernel does.

The server runs as a subprocess (stdin not a terminal, as under a service manager or an IDE) with the
provisioner's lease short; the daemon's lease grace is short too. A kernel started over the REST API is
gone from the host within lease and grace once the server is hung up, interrupted once, or killed,
while a kernel started without a lease (ssd-ctl start) stays.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import logged_in_client
from jupyterhost import Host, make_host
from support.eventually import eventually

from ssd.client import Client

LEASE = 2.0  # the provisioner's (SSDProvisioner.lease)
GRACE = 1.0  # the host's (kernels.lease_grace)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    """The daemon (short lease grace) and an ssd kernelspec written by ssd-ctl."""
    made = make_host(tmp_path_factory.mktemp("jupyter-server"), {"SSD_KERNELS_LEASE_GRACE": str(GRACE)})
    yield made
    made.daemon.stop_and_check()


@pytest.fixture
def admin(host: Host, tmp_path: Path) -> Iterator[Client]:
    """Another client of the same user, to look at the host; shuts down whatever a test left there."""
    client = logged_in_client(host.daemon, tmp_path / "admin", timeout=60)
    yield client
    for kernel in client.kernel_list():
        client.kernel_shutdown(kernel["kernel_id"])
    client.close()


class JupyterServer:
    """``jupyter server`` as a subprocess on a free loopback port, with a token, stdin not a terminal."""

    def __init__(self, host: Host, tmp: Path) -> None:
        self.token = secrets.token_hex(16)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        env = {
            **os.environ,
            "SSD_CLIENT_DIR": str(host.client_dir),
            "JUPYTER_PATH": str(host.jupyter / "share" / "jupyter"),
            "JUPYTER_CONFIG_DIR": str(tmp / "jupyter-config"),
            "JUPYTER_DATA_DIR": str(tmp / "jupyter-data"),
            "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter-runtime"),
        }
        args = [
            *(f"--ServerApp.{k}={v}" for k, v in (("ip", "127.0.0.1"), ("port", self.port), ("port_retries", 0))),
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={tmp}",
            f"--SSDProvisioner.lease={LEASE}",
            *(["--ServerApp.allow_root=True"] if os.geteuid() == 0 else []),
        ]
        self.log_path = tmp / "jupyter-server.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "jupyter_server", *args],
                env=env, cwd=tmp, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip
        eventually(self._answers, "the Jupyter server answering", timeout=40, interval=0.2)

    def _answers(self) -> bool:
        assert self.process.poll() is None, self.log_path.read_text()
        try:
            self.request("GET", "/api/status")
        except OSError:
            return False
        return True

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


@pytest.fixture
def server(host: Host, tmp_path: Path) -> Iterator[JupyterServer]:
    """A Jupyter server for this test."""
    started = JupyterServer(host, tmp_path)
    yield started
    started.stop()


@pytest.mark.parametrize("death", [signal.SIGHUP, signal.SIGINT, signal.SIGKILL], ids=["SIGHUP", "SIGINT", "SIGKILL"])
def test_the_kernel_dies_with_its_jupyter_server(
    host: Host, server: JupyterServer, admin: Client, death: signal.Signals
) -> None:
    """POST /api/kernels starts an ssd kernel that holds a lease; the server ends by *death* (one SIGINT
    without a terminal stops it at once); the kernel is gone from the host, its process too, within lease
    and grace. A kernel started without a lease stays."""
    unleased = admin.kernel_start("sci", "ipykernel")["kernel"]
    model = server.request("POST", "/api/kernels", {"name": host.spec})
    assert [k["id"] for k in server.request("GET", "/api/kernels")] == [model["id"]]
    (leased,) = [k for k in admin.kernel_list() if k["kernel_id"] != unleased["kernel_id"]]
    assert (leased["state"], leased["lease"]) == ("ready", LEASE)

    server.process.send_signal(death)
    server.process.wait(30)  # a single signal ends it: no prompt without a terminal

    eventually(
        lambda: leased["kernel_id"] not in {k["kernel_id"] for k in admin.kernel_list()},
        "the kernel gone from the host",
        timeout=LEASE + GRACE + 30,
        interval=0.2,
    )
    eventually(lambda: _gone(leased["pid"]), "the kernel's process gone")
    assert [k["kernel_id"] for k in admin.kernel_list()] == [unleased["kernel_id"]]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def write_spec(site: Host, name: str, **config: str) -> str:
    """A copy of the host's ssd kernelspec named *name*, with *config* changed in its provisioner config."""
    kernels = site.jupyter / "share" / "jupyter" / "kernels"
    document = json.loads((kernels / site.spec / "kernel.json").read_text())
    document["metadata"]["kernel_provisioner"]["config"].update(config)
    (kernels / name).mkdir(exist_ok=True)
    (kernels / name / "kernel.json").write_text(json.dumps(document))
    return name


def test_a_failed_start_answers_ssds_message_over_rest(host: Host, server: JupyterServer) -> None:
    """POST /api/kernels and POST /api/sessions (what JupyterLab sends) answer ssd's message, not "Unhandled
    error": a short first sentence, the reason, the command that fixes it on a line of its own."""
    name = write_spec(host, "ssd-nowhere", host="127.0.0.1:9")
    status, answer = server.failed_request("POST", "/api/kernels", {"name": name})
    assert (status, answer["reason"]) == (500, "ssd unreachable")
    lines = answer["message"].splitlines()
    assert lines[0] == "ssd could not start a kernel on 127.0.0.1:9 (environment sci).", lines
    assert lines[-2:] == ["Is the ssd daemon running there? Check with:", "    ssd-ctl info 127.0.0.1:9"], lines

    session = {"path": "nowhere.ipynb", "type": "notebook", "kernel": {"name": name}}
    status, answer = server.failed_request("POST", "/api/sessions", session)
    assert status == 500
    assert answer["message"].splitlines() == lines
    assert server.request("GET", "/api/kernels") == []


def test_a_failed_restart_is_logged_once_with_its_fix(host: Host, server: JupyterServer, admin: Client) -> None:
    """The environment vanished under a running kernel: Jupyter Server answers the restart with its fixed
    text, and its log carries ssd's message in one record, naming the environment and the command."""
    model = server.request("POST", "/api/kernels", {"name": host.spec})
    prefix = host.daemon.config_dir.parent / "envs" / "sci"
    moved = prefix.rename(prefix.with_name("sci-moved-away"))
    try:
        status, answer = server.failed_request("POST", f"/api/kernels/{model['id']}/restart")
        assert (status, answer["message"]) == (500, "Exception restarting kernel")
        (record,) = server.log_records("ssd could not")
        assert record.endswith(f"ssd could not restart a kernel on {host.daemon.host} (environment sci).")
        # The record's further lines, indented by Jupyter's log format (then jupyter_client's traceback).
        fix = f"\n    Is it gone? Update the kernelspecs with:\n        ssd-ctl kernelspec sync {host.daemon.host}\n"
        log = server.log_path.read_text()
        assert fix in log
        assert str(prefix) in log
    finally:
        moved.rename(prefix)


def test_a_notebooks_kernel_starts_in_its_folder_and_is_labelled(
    host: Host, server: JupyterServer, admin: Client, tmp_path: Path
) -> None:
    """POST /api/sessions for work/analysis.ipynb: the kernel starts on the host in the notebook's folder
    (it exists there: same machine, as with a shared home), and ssd-ctl kernels shows the notebook's path."""
    (tmp_path / "work").mkdir()
    session = {"path": "work/analysis.ipynb", "type": "notebook", "kernel": {"name": host.spec}}
    server.request("POST", "/api/sessions", session)
    (kernel,) = admin.kernel_list()
    assert (kernel["cwd"], kernel["label"]) == (str(tmp_path / "work"), "work/analysis.ipynb")
    (listed,) = host.ctl("kernels", host.daemon.host)["kernels"]
    assert listed["label"] == "work/analysis.ipynb"
    table = subprocess.run(
        [sys.executable, "-m", "ssd.ctl.main", "kernels", host.daemon.host],
        env={**os.environ, "SSD_CLIENT_DIR": str(host.client_dir), "COLUMNS": "200"},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "work/analysis.ipynb" in table.stdout

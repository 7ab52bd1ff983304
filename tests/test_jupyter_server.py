"""A real Jupyter Server with an ssd kernelspec: its kernel dies with it, as a local kernel does.

The server runs as a subprocess (stdin not a terminal, as under a service manager or an IDE) with the
provisioner's lease short; the daemon's lease grace is short too. A kernel started over the REST API is
gone from the host within lease and grace once the server is hung up, interrupted once, or killed,
while a kernel started without a lease (ssd-ctl start) stays.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from jupyterhost import Host, JupyterServer, host_admin, make_host, write_spec
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
    with host_admin(host, tmp_path) as client:
        yield client


@pytest.fixture
def server(host: Host, tmp_path: Path) -> Iterator[JupyterServer]:
    """A Jupyter server for this test."""
    started = JupyterServer(host, tmp_path, lease=LEASE)
    yield started
    started.stop()


@pytest.mark.parametrize("death", [signal.SIGHUP, signal.SIGINT, signal.SIGKILL], ids=["SIGHUP", "SIGINT", "SIGKILL"])
def test_the_kernel_dies_with_its_jupyter_server(
    host: Host, server: JupyterServer, admin: Client, death: signal.Signals
) -> None:
    """POST /api/kernels starts an ssd kernel that holds a lease; the server ends by *death* (one SIGINT
    without a terminal stops it at once); the kernel is gone from the host, its process too, within lease
    and grace. A kernel started without a lease stays."""
    unleased = admin.kernel_start("sci", "ipykernel").kernel
    model = server.request("POST", "/api/kernels", {"name": host.spec})
    assert [k["id"] for k in server.request("GET", "/api/kernels")] == [model["id"]]
    (leased,) = [k for k in admin.kernel_list() if k.kernel_id != unleased.kernel_id]
    assert (leased.state, leased.lease) == ("ready", LEASE)

    server.process.send_signal(death)
    server.process.wait(30)  # a single signal ends it: no prompt without a terminal

    eventually(
        lambda: leased.kernel_id not in {k.kernel_id for k in admin.kernel_list()},
        "the kernel gone from the host",
        timeout=LEASE + GRACE + 30,
        interval=0.2,
    )
    eventually(lambda: _gone(leased.pid), "the kernel's process gone")
    assert [k.kernel_id for k in admin.kernel_list()] == [unleased.kernel_id]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


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
    assert (kernel.cwd, kernel.label) == (str(tmp_path / "work"), "work/analysis.ipynb")
    (listed,) = host.ctl("kernels", host.daemon.host)["kernels"]
    assert listed["label"] == "work/analysis.ipynb"
    table = subprocess.run(
        [sys.executable, "-m", "ssd.ctl.main", "kernels", host.daemon.host],
        env={**os.environ, "SSD_CLIENT_DIR": str(host.client_dir), "COLUMNS": "200"},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "work/analysis.ipynb" in table.stdout


def test_jupyters_kernels_come_from_the_hosts_spares_which_it_never_lists(
    host: Host, server: JupyterServer, admin: Client
) -> None:
    """After a kernel started over the REST API the host keeps a spare that Jupyter does not list (nor does
    the host's kernel_list); Jupyter's next kernel is that spare, with no change on Jupyter's side."""
    first = server.request("POST", "/api/kernels", {"name": host.spec})

    def ready_spare() -> str | None:
        spares = admin.kernel_list(spares=True)
        return spares[0].kernel_id if len(spares) == 1 and spares[0].state == "ready" else None

    spare = eventually(ready_spare, "a ready spare on the host", timeout=40)
    assert [k["id"] for k in server.request("GET", "/api/kernels")] == [first["id"]]
    assert spare not in {k.kernel_id for k in admin.kernel_list()}
    second = server.request("POST", "/api/kernels", {"name": host.spec})
    assert {k["id"] for k in server.request("GET", "/api/kernels")} == {first["id"], second["id"]}
    assert spare in {k.kernel_id for k in admin.kernel_list()}  # the spare, now Jupyter's second kernel
    assert len(admin.kernel_list()) == 2

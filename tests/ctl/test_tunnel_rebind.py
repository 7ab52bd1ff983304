"""ssd-ctl tunnel killed and reopened: the same endpoints and file, so an open jupyter_client recovers by itself.

One user-mode daemon (CURVE relay, the default transport) and one ipykernel serve
the module; each test runs ``ssd-ctl tunnel`` as a subprocess, SIGKILLs it and
opens it again.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from envfixtures import conda_copy, kernel_venv
from jupyter_client.blocking.client import BlockingKernelClient
from support.daemon import Daemon, start_daemon
from support.eventually import eventually

from ssd.client.tunnelstate import tunnel_key

CTL = [sys.executable, "-m", "ssd.ctl.main"]


@dataclass
class Site:
    """The daemon, a logged-in client directory, its Jupyter runtime dir and the running kernel."""

    daemon: Daemon
    client_dir: Path
    runtime: Path
    kernel_id: str = ""

    def env(self) -> dict[str, str]:
        """ssd-ctl's environment for this client."""
        return {**os.environ, "SSD_CLIENT_DIR": str(self.client_dir), "JUPYTER_RUNTIME_DIR": str(self.runtime)}

    def json(self, *args: str) -> dict[str, Any]:
        """ssd-ctl ARGS --json, exit 0 required."""
        result = subprocess.run(
            [*CTL, *args, "--json"],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, result.stderr
        document: dict[str, Any] = json.loads(result.stdout)
        return document


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A daemon finding env ``sci``, a key login, and one ipykernel started in it."""
    tmp = tmp_path_factory.mktemp("tunnel-rebind")
    conda_copy(kernel_venv(), tmp / "envs" / "sci")
    extra = {"SSD_ENVS_ENVS_DIRS": str(tmp / "envs"), "SSD_KERNELS_STOP_ON_EXIT": "true"}
    daemon = start_daemon(tmp, extra_env=extra)
    made = Site(daemon, tmp / "client", tmp / "runtime")
    try:
        daemon.authorize(made.json("keygen")["public_key"].encode())
        made.json("login", daemon.host, "--key-only", "--trust")
        made.kernel_id = made.json("start", daemon.host, "sci", "--kind", "ipykernel", "--timeout", "60")["kernel"][
            "kernel_id"
        ]
        yield made
    finally:
        daemon.stop_and_check()


class TunnelProcess:
    """``ssd-ctl tunnel HOST KERNEL --json`` running; its stderr lines collected by a thread."""

    def __init__(self, site: Site, *extra: str) -> None:
        argv = [*CTL, "tunnel", site.daemon.host, site.kernel_id, "--json", *extra]
        self.process = subprocess.Popen(
            argv, env=site.env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.errors: queue.Queue[str] = queue.Queue()
        self.err_lines: list[str] = []
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._reader = threading.Thread(target=self._read, args=(self.process.stderr,), daemon=True)
        self._reader.start()
        self.document: dict[str, Any] = json.loads(self._document(self.process.stdout))

    def _document(self, stdout: IO[str]) -> str:
        text = ""
        for line in stdout:  # one indented JSON document, written once the tunnel is open
            text += line
            if line.startswith("}"):
                return text
        raise AssertionError(f"the tunnel ended without a document: {self.stderr_so_far()}")

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.errors.put(line)

    def stderr_so_far(self) -> str:
        """Every stderr line read so far."""
        while not self.errors.empty():
            self.err_lines.append(self.errors.get())
        return "".join(self.err_lines)

    def kill(self, signum: int = signal.SIGKILL) -> None:
        """SIGKILL, as a crash or an OOM kill would (or *signum*); reaped."""
        self.process.send_signal(signum)
        try:
            self.process.wait(30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self._reader.join(10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def tunnel(site: Site, *extra: str) -> Iterator[TunnelProcess]:
    """A tunnel process, stopped by Ctrl-C at the end (killed if that fails)."""
    opened = TunnelProcess(site, *extra)
    try:
        yield opened
    finally:
        if opened.process.poll() is None:
            opened.kill(signal.SIGINT)


@contextmanager
def frontend(path: Path) -> Iterator[BlockingKernelClient]:
    """A jupyter_client that reads the classic file once, as Spyder's console does, and keeps its sockets."""
    client = BlockingKernelClient()
    client.load_connection_file(str(path))
    client.start_channels(hb=False)  # the heartbeat would call a kernel dead while its tunnel is down
    try:
        yield client
    finally:
        client.stop_channels()


def executes(client: BlockingKernelClient, code: str) -> bool:
    """Whether *code* ran through *client* within a few seconds (False while the path is down)."""
    try:
        reply = client.execute_interactive(code, timeout=5, output_hook=lambda msg: None)
    except TimeoutError:
        return False
    return bool(reply["content"]["status"] == "ok")


def _said(process: TunnelProcess, text: str) -> str | None:
    """The tunnel's stderr once it holds *text*."""
    said = process.stderr_so_far()
    return said if text in said else None


def _ports(path: Path) -> dict[str, Any]:
    info: dict[str, Any] = json.loads(path.read_text())
    return {key: info[key] for key in ("ip", "transport", "shell_port", "iopub_port", "stdin_port", "control_port")}


def test_reopened_ipc_tunnel_binds_the_same_sockets_and_the_client_recovers(site: Site) -> None:
    """Default (ipc): SIGKILL the tunnel, reopen it: same file, same 0700 folder, the old client runs code again."""
    with tunnel(site) as first:
        path = Path(first.document["connection_file"])
        before = _ports(path)
        folder = Path(before["ip"]).parent
        assert before["transport"] == "ipc"
        assert folder.name == f"ssd-tunnel-{os.geteuid()}-{tunnel_key(site.daemon.host, site.kernel_id)}"
        assert (folder.stat().st_uid, stat.S_IMODE(folder.stat().st_mode)) == (os.geteuid(), 0o700)
        with frontend(path) as client:
            eventually(lambda: executes(client, "x = 41"), "the first tunnel runs code", timeout=40)
            first.kill()
            with tunnel(site) as second:
                assert Path(second.document["connection_file"]) == path
                assert _ports(path) == before
                # The probe must be idempotent: a cell that timed out while the path was down may still run.
                eventually(lambda: executes(client, "x"), "the same client runs code again", timeout=40)
                assert executes(client, "x += 1")
                assert client.execute_interactive("assert x == 42", timeout=10)["content"]["status"] == "ok"
            assert not path.exists()  # a tunnel stopped normally removes its file and sockets
            assert not folder.exists()


def test_reopened_tcp_tunnel_binds_the_same_ports_and_the_client_recovers(site: Site) -> None:
    """--tcp: the same 127.0.0.1 ports after a SIGKILL; the same client object executes again."""
    with tunnel(site, "--tcp") as first:
        path = Path(first.document["connection_file"])
        before = _ports(path)
        assert (before["transport"], before["ip"]) == ("tcp", "127.0.0.1")
        with frontend(path) as client:
            eventually(lambda: executes(client, "y = 1"), "the first tunnel runs code", timeout=40)
            first.kill()
            with tunnel(site, "--tcp") as second:
                assert _ports(path) == before
                assert "must reconnect" not in second.stderr_so_far()
                eventually(lambda: executes(client, "y"), "the same client runs code again", timeout=40)


def test_a_port_taken_meanwhile_gets_a_new_one_and_says_the_frontend_must_reconnect(site: Site) -> None:
    """Another program took the shell port while the tunnel was down: a new port, a message, a working file."""
    with tunnel(site, "--tcp") as first:
        path = Path(first.document["connection_file"])
        before = _ports(path)
        first.kill()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", before["shell_port"]))
        squatter.listen()
        with tunnel(site, "--tcp") as second:
            after = _ports(path)
            message = eventually(lambda: _said(second, "must reconnect"), "the port message")
            assert f"shell (now {after['shell_port']})" in message
            assert after["shell_port"] != before["shell_port"]
            assert {k: v for k, v in after.items() if k != "shell_port"} == {
                k: v for k, v in before.items() if k != "shell_port"
            }
            with frontend(path) as client:
                eventually(lambda: executes(client, "z = 1"), "a client of the new file runs code", timeout=40)


def test_a_second_tunnel_to_the_same_kernel_is_refused(site: Site) -> None:
    """While one tunnel runs, another for the same kernel stops with a clear error and leaves the first working."""
    with tunnel(site) as first:
        path = Path(first.document["connection_file"])
        result = subprocess.run(
            [*CTL, "tunnel", site.daemon.host, site.kernel_id],
            env=site.env(),
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode != 0
        assert "already open" in result.stderr
        with frontend(path) as client:
            eventually(lambda: executes(client, "w = 1"), "the first tunnel still runs code", timeout=40)

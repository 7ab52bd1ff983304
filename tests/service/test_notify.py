"""Readiness over sd_notify: the notifier itself, and a daemon started as its unit starts it
telling a test notify socket READY=1 (sockets bound, announced) and STOPPING=1 on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from support.ci import require_root

from ssd.client import Client, KnownHosts
from ssd.client.discovery import async_resolve_instance
from ssd.client.identity import client_keypair
from ssd.paths import ServerPaths
from ssd.service.notify import Notifier
from ssd.service.unit import system_unit, user_unit


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A unix datagram socket standing in for systemd's notify socket; its path."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30)
    yield sock, path
    sock.close()


def test_notifier_sends_to_a_path_and_to_an_abstract_socket(listener: tuple[socket.socket, str]) -> None:
    """A filesystem path and an @abstract name both receive the datagram."""
    sock, path = listener
    assert Notifier(path).notify("READY=1")
    assert sock.recv(4096) == b"READY=1"
    name = f"ssd-test-{secrets.token_hex(6)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as abstract:
        abstract.bind("\0" + name)
        abstract.settimeout(10)
        assert Notifier("@" + name).notify("STOPPING=1")
        assert abstract.recv(4096) == b"STOPPING=1"


def test_notifier_without_a_socket_is_a_no_op(tmp_path: Path) -> None:
    """No variable, an unsupported address or a dead socket: False, never an exception."""
    environ = {"OTHER": "x"}
    assert Notifier.from_environment(environ).notify("READY=1") is False
    assert Notifier("vsock:2:1234").notify("READY=1") is False
    assert Notifier(str(tmp_path / "nobody-listens")).notify("READY=1") is False


def test_from_environment_takes_the_variable_away() -> None:
    """Children (workers, kernels) must not inherit NOTIFY_SOCKET."""
    environ = {"NOTIFY_SOCKET": "/run/x"}
    assert Notifier.from_environment(environ).address == "/run/x"
    assert "NOTIFY_SOCKET" not in environ


def unit_argv(mode: str, paths: ServerPaths) -> list[str]:
    """ExecStart of the unit ``ssd install`` writes for *mode*, as argv."""
    python = Path(sys.executable)
    text = system_unit(python, paths) if mode == "system" else user_unit(python, paths, paths)
    line = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


def receive(sock: socket.socket) -> dict[str, str]:
    """One notification as key=value pairs."""
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


@pytest.mark.parametrize("mode", ["user", "system"])
def test_daemon_started_like_the_unit_reports_ready_then_stopping(
    tmp_path: Path, listener: tuple[socket.socket, str], mode: str
) -> None:
    """READY=1 comes once the ports answer and the announcement resolves; STOPPING=1 on SIGTERM; exit 0."""
    if mode == "system":
        require_root()
    sock, path = listener
    paths = ServerPaths(mode, tmp_path / "cfg", tmp_path / "state")  # type: ignore[arg-type]
    env = {
        **os.environ,
        "SSD_CONFIG_DIR": str(paths.config_dir),
        "SSD_STATE_DIR": str(paths.state_dir),
        "NOTIFY_SOCKET": path,
    }
    if mode == "system":
        subprocess.run(
            [str(Path(sys.executable).with_name("ssd")), "init", "--system"], env=env, check=True, timeout=60
        )
    name = f"ssd-notify-{secrets.token_hex(3)}"
    argv = [*unit_argv(mode, paths), "--bind", "127.0.0.1", "--port", "0", "--name", name]
    log = (tmp_path / "daemon.log").open("wb")
    process = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=log, stderr=log)
    try:
        ready = receive(sock)
        assert ready.get("READY") == "1", ready
        info = json.loads((paths.state_dir / "daemon.json").read_text())
        with Client(
            f"127.0.0.1:{info['control_port']}",
            trust=True,
            identity=client_keypair(tmp_path / "client"),
            known_hosts=KnownHosts(tmp_path / "client" / "known_hosts"),
            ca_file="",
        ) as client:
            assert client.server_info().mode == mode
        found = asyncio.run(async_resolve_instance(name, 5.0, interfaces=["127.0.0.1"]))
        assert found is not None
        assert found.port == info["control_port"]
        for child in psutil.Process(process.pid).children(recursive=True):
            assert "NOTIFY_SOCKET" not in child.environ(), child.cmdline()
        process.send_signal(signal.SIGTERM)
        assert receive(sock).get("STOPPING") == "1"
        assert process.wait(30) == 0, (tmp_path / "daemon.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()

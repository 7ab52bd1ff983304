"""The host side of the Spyder tests: a system-mode daemon that announces itself on loopback, or one in a
network namespace joined to this one by a veth pair, and tcpdump on that veth."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netns import Namespace, kill_namespace
from support.daemon import Daemon
from users import SSD, User

__all__ = ["SpyderWorld", "announcing_system_daemon", "capture", "namespace_beside", "unique_name"]


def unique_name(stem: str) -> str:
    """An instance name no other test (or run) announces."""
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def announcing_system_daemon(
    tmp: Path,
    name: str,
    *,
    init: bool = True,
    bind: str = "127.0.0.1",
    netns: Namespace | None = None,
    extra_env: dict[str, str] | None = None,
) -> Daemon:
    """``ssd init --system`` (unless *init* is False) and ``ssd run --system`` announcing *name* on *bind*
    (loopback), or inside *netns*; *extra_env* adds to its environment (``SSD_SLURM_*``)."""
    tmp.mkdir(parents=True, exist_ok=True)
    config_dir, state_dir = tmp / "server-config", tmp / "server-state"
    env = {
        **os.environ,
        "SSD_CONFIG_DIR": str(config_dir),
        "SSD_STATE_DIR": str(state_dir),
        "SSD_DISCOVERY_REFRESH_INTERVAL": "0.2",
        "SSD_DISCOVERY_TXT_MIN_INTERVAL": "0",
        "SSD_SERVER_STATUS_INTERVAL": "0.5",
        **(extra_env or {}),
    }
    if init:
        subprocess.run([SSD, "init", "--system"], env=env, cwd=tmp, capture_output=True, check=True, timeout=30)
    argv = [sys.executable, "-m", "ssd", "--system", "--bind", bind, "--port", "0", "--name", name]
    if netns is not None:
        argv = netns.command(*argv)
    log_path = tmp / "daemon.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen([*argv, "--log-level", "debug"], env=env, cwd=tmp, stdout=log, stderr=log)
    return Daemon(process, config_dir, state_dir, log_path).wait_ready(timeout=30)


@dataclass
class SpyderWorld:
    """What the tests share: Spyder's window, the daemon (replaced when restarted), the user and the env."""

    window: Any  # spyderwindow.Window
    daemon: Daemon
    name: str
    user: User
    prefix: Path
    tmp: Path
    client_dir: Path


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, timeout=10)


@contextlib.contextmanager
def namespace_beside(tag: str) -> Iterator[tuple[Namespace, str]]:
    """A network namespace joined to this one (where Spyder runs) by a veth pair: the namespace and this side's
    address; the namespace's end is ``ns.address``."""
    stem = f"ssds{os.getpid() % 100000}{tag[:2]}"  # device names have at most 15 bytes
    subnet = 10 + os.getpid() % 200
    ns = Namespace(stem, f"{stem}n", f"10.232.{subnet}.1")
    here, here_address = f"{stem}h", f"10.232.{subnet}.2"
    try:
        _ip("netns", "add", ns.name)
        _ip("link", "add", here, "type", "veth", "peer", "name", ns.device)
        _ip("link", "set", ns.device, "netns", ns.name)
        _ip("-n", ns.name, "addr", "add", f"{ns.address}/24", "dev", ns.device)
        _ip("-n", ns.name, "link", "set", ns.device, "up")
        _ip("-n", ns.name, "link", "set", "lo", "up")
        _ip("addr", "add", f"{here_address}/24", "dev", here)
        _ip("link", "set", here, "up")
        yield ns, here_address
    finally:
        kill_namespace(ns.name)  # deleting the namespace deletes the veth pair with it


@contextlib.contextmanager
def capture(ns: Namespace, path: Path) -> Iterator[Path]:
    """tcpdump on the namespace's end of the veth: every byte of every TCP packet, in *path* once it ends."""
    argv = ns.command("tcpdump", "-i", ns.device, "--immediate-mode", "-U", "-s", "0", "-w", str(path), "tcp")
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    try:
        line = process.stderr.readline()
        assert "listening on" in line, line
        yield path
    finally:
        process.send_signal(signal.SIGINT)  # --immediate-mode: nothing waits in a buffer; tcpdump writes on exit
        process.wait(10)
        process.stderr.close()

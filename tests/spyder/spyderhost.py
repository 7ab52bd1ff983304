"""The host side of the Spyder tests: a system-mode daemon that announces itself on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.daemon import Daemon
from users import SSD, User

__all__ = ["SpyderWorld", "announcing_system_daemon", "unique_name"]


def unique_name(stem: str) -> str:
    """An instance name no other test (or run) announces."""
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def announcing_system_daemon(tmp: Path, name: str, *, init: bool = True) -> Daemon:
    """``ssd init --system`` (unless *init* is False) and ``ssd run --system`` announcing *name* on loopback."""
    tmp.mkdir(parents=True, exist_ok=True)
    config_dir, state_dir = tmp / "server-config", tmp / "server-state"
    env = {
        **os.environ,
        "SSD_CONFIG_DIR": str(config_dir),
        "SSD_STATE_DIR": str(state_dir),
        "SSD_DISCOVERY_REFRESH_INTERVAL": "0.2",
        "SSD_DISCOVERY_TXT_MIN_INTERVAL": "0",
        "SSD_SERVER_STATUS_INTERVAL": "0.5",
    }
    if init:
        subprocess.run([SSD, "init", "--system"], env=env, cwd=tmp, capture_output=True, check=True, timeout=30)
    argv = [sys.executable, "-m", "ssd", "--system", "--bind", "127.0.0.1", "--port", "0", "--name", name]
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

"""Where ssd keeps its files, following the platform's conventions (XDG on Linux)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import platformdirs

Mode = Literal["user", "system"]

APP = "ssd"
CONFIG_FILE = "ssd.toml"
SYSTEM_CONFIG_DIR = Path("/etc/ssd")
SYSTEM_STATE_DIR = Path("/var/lib/ssd")


@dataclass(frozen=True)
class ServerPaths:
    """The directories and files of one daemon."""

    mode: Mode
    config_dir: Path
    state_dir: Path

    @property
    def config_file(self) -> Path:
        """The daemon's TOML configuration file."""
        return self.config_dir / CONFIG_FILE

    @property
    def key_stem(self) -> Path:
        """The server keypair: ``server.key`` (public) and ``server.key_secret``."""
        return self.config_dir / "server"


def server_paths(mode: Mode) -> ServerPaths:
    """Return the daemon's paths for *mode*; ``SSD_CONFIG_DIR``/``SSD_STATE_DIR`` override."""
    if mode == "system":
        config, state = SYSTEM_CONFIG_DIR, SYSTEM_STATE_DIR
    else:
        config = Path(platformdirs.user_config_dir(APP))
        state = Path(platformdirs.user_state_dir(APP))
    config = Path(os.environ.get("SSD_CONFIG_DIR") or config)
    state = Path(os.environ.get("SSD_STATE_DIR") or state)
    return ServerPaths(mode=mode, config_dir=config, state_dir=state)


def client_dir() -> Path:
    """Return the directory of the client's keypair and known hosts (``SSD_CLIENT_DIR``)."""
    env = os.environ.get("SSD_CLIENT_DIR")
    if env:
        return Path(env)
    return Path(platformdirs.user_config_dir(APP)) / "client"

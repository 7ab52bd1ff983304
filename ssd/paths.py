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
SYSTEM_LOG_DIR = Path("/var/log/ssd")
UNIT_NAME = "ssd.service"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")


@dataclass(frozen=True)
class ServerPaths:
    """The directories and files of one daemon."""

    mode: Mode
    config_dir: Path
    state_dir: Path
    log_dir: Path | None = None  # None: the daemon logs only to stderr (the journal under systemd)

    @property
    def config_file(self) -> Path:
        """The daemon's TOML configuration file."""
        return self.config_dir / CONFIG_FILE

    @property
    def key_stem(self) -> Path:
        """The server keypair: ``server.key`` (public) and ``server.key_secret``."""
        return self.config_dir / "server"

    @property
    def cert_file(self) -> Path:
        """The server's X.509 certificate (PEM; the leaf first, then any chain) binding its CURVE key."""
        return self.config_dir / "server.crt"

    @property
    def cert_key_file(self) -> Path:
        """The certificate's own signing key (0600): signs the self-signed certificate and the CSR."""
        return self.config_dir / "server.crt.key"

    @property
    def csr_file(self) -> Path:
        """Where ``ssd cert csr`` writes the certificate signing request for a site's CA."""
        return self.config_dir / "server.csr"


def server_paths(mode: Mode) -> ServerPaths:
    """Return the daemon's paths for *mode*; ``SSD_CONFIG_DIR``/``SSD_STATE_DIR`` override."""
    if mode == "system":
        config, state, logs = SYSTEM_CONFIG_DIR, SYSTEM_STATE_DIR, SYSTEM_LOG_DIR
    else:
        config = Path(platformdirs.user_config_dir(APP))
        state = Path(platformdirs.user_state_dir(APP))
        logs = Path(platformdirs.user_log_dir(APP))
    config = Path(os.environ.get("SSD_CONFIG_DIR") or config)
    state = Path(os.environ.get("SSD_STATE_DIR") or state)
    logs = Path(os.environ.get("SSD_LOG_DIR") or logs)
    return ServerPaths(mode=mode, config_dir=config, state_dir=state, log_dir=logs)


def user_unit_dir() -> Path:
    """Where systemd looks for this user's own units: ``$XDG_CONFIG_HOME/systemd/user``."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def client_ca_file() -> Path | None:
    """The CA file clients verify server certificates with: ``SSD_CA_FILE``, else ``CLIENT_DIR/ca.pem`` if present."""
    env = os.environ.get("SSD_CA_FILE")
    if env:
        return Path(env)
    default = client_dir() / "ca.pem"
    return default if default.exists() else None


def client_dir() -> Path:
    """Return the directory of the client's keypair and known hosts (``SSD_CLIENT_DIR``)."""
    env = os.environ.get("SSD_CLIENT_DIR")
    if env:
        return Path(env)
    return Path(platformdirs.user_config_dir(APP)) / "client"

"""A real ``ssd run`` in a subprocess on loopback ports, and clients for it (the ``daemon`` fixture's parts)."""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssd.client import Client, KnownHosts
from ssd.client.identity import client_keypair
from support.eventually import eventually

__all__ = ["Daemon", "logged_in_client", "new_client", "start_daemon"]


@dataclass
class Daemon:
    """A running ``ssd run`` process and what it bound."""

    process: subprocess.Popen[bytes]
    config_dir: Path
    state_dir: Path
    log_path: Path
    info: dict[str, object] = field(default_factory=dict)

    @property
    def host(self) -> str:
        """HOST argument for ssd-ctl: 127.0.0.1:PORT."""
        return f"127.0.0.1:{self.info['control_port']}"

    @property
    def port(self) -> int:
        """The control port."""
        return int(str(self.info["control_port"]))

    def log(self) -> str:
        """Everything the daemon wrote to stderr so far."""
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 20.0) -> Daemon:
        """Wait until the daemon wrote daemon.json (its bound ports); fail with its log if it exits."""
        runtime = self.state_dir / "daemon.json"  # written by rename: never seen half-written

        def written() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.process.returncode}:\n{self.log()}")
            return runtime.exists()

        try:
            eventually(written, "daemon.json", timeout=timeout, interval=0.02)
        except AssertionError:
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"daemon did not start:\n{self.log()}") from None
        self.info = json.loads(runtime.read_text())
        return self

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM the daemon and wait; return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def authorize(self, public_key: bytes, user: str | None = None) -> None:
        """List *public_key* in the administrator's authorized keys of *user* (default: the daemon's user)."""
        user = user or pwd.getpwuid(os.geteuid()).pw_name
        directory = self.config_dir / "authorized_keys.d"
        directory.mkdir(mode=0o700, exist_ok=True)
        path = directory / user
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as fh:
            fh.write(public_key + b"\n")

    def stop_and_check(self) -> None:
        """Stop the daemon and fail unless it exits 0 in time (killing it if it hangs)."""
        try:
            code = self.stop()
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        assert code == 0, self.log()


def new_client(daemon: Daemon, directory: Path, **options: Any) -> Client:
    """A Client with its own keypair and known hosts in *directory*, trusting *daemon* (not connected)."""
    return Client(
        daemon.host,
        trust=True,
        identity=client_keypair(directory),
        known_hosts=KnownHosts(directory / "known_hosts"),
        **options,
    )


def logged_in_client(daemon: Daemon, directory: Path, **options: Any) -> Client:
    """A connected Client whose key the daemon authorizes for its own user, logged in by that key."""
    client = new_client(daemon, directory, **options)
    daemon.authorize(client.aclient.identity.public)
    try:
        client.connect()
        client.login(pwd.getpwuid(os.geteuid()).pw_name)
    except BaseException:
        client.close()
        raise
    return client


def start_daemon(tmp: Path, *, extra_env: dict[str, str] | None = None, args: list[str] | None = None) -> Daemon:
    """Start ``ssd run`` on random loopback ports and wait until it wrote daemon.json."""
    config_dir, state_dir = tmp / "server-config", tmp / "server-state"
    env = {
        **os.environ,
        "SSD_CONFIG_DIR": str(config_dir),
        "SSD_STATE_DIR": str(state_dir),
        "SSD_SERVER_STATUS_INTERVAL": "0.5",
        **(extra_env or {}),
    }
    log_path = tmp / "daemon.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ssd", "--bind", "127.0.0.1", "--port", "0", "--no-announce", *(args or [])],
            env=env,
            cwd=tmp,  # so `-m ssd` imports the installed package, not a source tree in cwd
            stdout=log,
            stderr=log,
        )
    return Daemon(process, config_dir, state_dir, log_path).wait_ready()

"""ssd-ctl as a user runs it: a subprocess against a real daemon, checking output and exit codes."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest
import zmq
from support.daemon import Daemon

from ssd.errors import ErrorCode
from ssd.keys import fingerprint

CTL = [sys.executable, "-m", "ssd.ctl.main"]


def ctl(*args: str, client_dir: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ssd-ctl with its own client directory; never with a terminal attached."""
    env = {**os.environ, "SSD_CLIENT_DIR": str(client_dir)}
    return subprocess.run(
        [*CTL, *args], env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def test_console_script_and_help(client_dir: Path) -> None:
    """The installed ssd-ctl script prints help for itself and every command."""
    script = Path(sys.executable).with_name("ssd-ctl")
    assert script.exists()
    top = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    for command in ("info", "ping", "trust", "known-hosts", "keygen", "watch"):
        assert command in top.stdout
        sub = ctl(command, "--help", client_dir=client_dir)
        assert sub.returncode == 0, sub.stderr
        assert "--json" in sub.stdout


def test_first_contact_is_refused_until_trusted(daemon: Daemon, client_dir: Path) -> None:
    """Without --trust an unknown server is a trust failure (exit 4) that shows the fingerprint."""
    result = ctl("info", daemon.host, client_dir=client_dir)
    assert result.returncode == 4
    assert str(daemon.info["fingerprint"]) in result.stderr
    assert f"ssd-ctl trust {daemon.host}" in result.stderr
    as_json = ctl("info", daemon.host, "--json", client_dir=client_dir)
    assert as_json.returncode == 4
    assert json.loads(as_json.stdout)["error"] == ErrorCode.SERVER_UNTRUSTED
    assert not (client_dir / "known_hosts").exists()


def test_trust_then_info(daemon: Daemon, client_dir: Path) -> None:
    """trust pins the key (0600 file) and later commands need no flag."""
    trusted = ctl("trust", daemon.host, "--json", client_dir=client_dir)
    assert trusted.returncode == 0, trusted.stderr
    assert json.loads(trusted.stdout)["fingerprint"] == daemon.info["fingerprint"]
    assert (client_dir / "known_hosts").stat().st_mode & 0o777 == 0o600
    info = ctl("info", daemon.host, "--json", client_dir=client_dir)
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert data["fingerprint"] == daemon.info["fingerprint"]
    assert data["control_port"] == daemon.port
    assert data["mode"] == "user"
    assert data["cpus"] >= 1
    assert "ping" in data["capabilities"]
    assert "kernel_start" in data["capabilities"]
    assert data["kernel_transport"] == "curve"  # the default: kernels behind the encrypted relay
    human = ctl("info", daemon.host, client_dir=client_dir)
    assert human.returncode == 0
    assert "fingerprint" in human.stdout
    assert "curve (encrypted relay" in human.stdout


def login(daemon: Daemon, client_dir: Path) -> None:
    """Make this client's key (keygen), authorize it for the daemon's user and log in with it."""
    made = ctl("keygen", "--json", client_dir=client_dir)
    assert made.returncode == 0, made.stderr
    daemon.authorize(json.loads(made.stdout)["public_key"].encode())
    user = pwd.getpwuid(os.geteuid()).pw_name
    result = ctl("login", daemon.host, "--key-only", "--user", user, "--json", client_dir=client_dir)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["user"] == user


def test_ping_counts_round_trips(daemon: Daemon, client_dir: Path) -> None:
    """ping --count N reports N round-trip times, through the broker and through the worker."""
    for extra in ([], ["--worker"]):
        if extra:
            login(daemon, client_dir)  # the worker's echo_request needs a login; the broker's ping does not
        result = ctl("ping", daemon.host, "--count", "3", "-i", "0", "--trust", "--json", *extra, client_dir=client_dir)
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["count"] == 3
        assert len(data["rtt_ms"]) == 3
        assert data["via"] == ("worker" if extra else "broker")
        assert 0 < data["min_ms"] <= data["avg_ms"] <= data["max_ms"]


def test_changed_key_is_a_hard_error(daemon: Daemon, client_dir: Path) -> None:
    """A pinned key that differs from the server's names both fingerprints and the file."""
    other_public, _ = zmq.curve_keypair()
    client_dir.mkdir(mode=0o700)
    (client_dir / "known_hosts").write_text(f"{daemon.host} {other_public.decode()}\n")
    result = ctl("info", daemon.host, "--timeout", "3", client_dir=client_dir)
    assert result.returncode == 4, result.stderr
    assert fingerprint(other_public) in result.stderr
    assert str(daemon.info["fingerprint"]) in result.stderr
    assert str(client_dir / "known_hosts") in result.stderr
    refused = ctl("trust", daemon.host, client_dir=client_dir)
    assert refused.returncode == 4
    replaced = ctl("trust", daemon.host, "--replace", client_dir=client_dir)
    assert replaced.returncode == 0, replaced.stderr
    assert ctl("info", daemon.host, client_dir=client_dir).returncode == 0


def test_unreachable_and_usage_exit_codes(client_dir: Path) -> None:
    """Nothing listening is exit 3; a malformed HOST or count is exit 2."""
    with zmq.Context() as ctx, ctx.socket(zmq.ROUTER) as probe:
        port = probe.bind_to_random_port("tcp://127.0.0.1")
    result = ctl("info", f"127.0.0.1:{port}", "--timeout", "1", client_dir=client_dir)
    assert result.returncode == 3
    assert "cannot reach" in result.stderr
    assert ctl("info", "no:such:host", client_dir=client_dir).returncode == 2
    assert ctl("info", "host:99999", client_dir=client_dir).returncode == 2
    assert ctl("info", client_dir=client_dir).returncode == 2
    assert ctl("ping", "127.0.0.1", "--count", "0", client_dir=client_dir).returncode == 2


def test_known_hosts_list_and_forget(daemon: Daemon, client_dir: Path) -> None:
    """known-hosts lists pinned servers and --forget removes one."""
    assert ctl("trust", daemon.host, client_dir=client_dir).returncode == 0
    listed = json.loads(ctl("known-hosts", "--json", client_dir=client_dir).stdout)
    assert listed["hosts"] == [{"host": daemon.host, "fingerprint": daemon.info["fingerprint"]}]
    assert ctl("known-hosts", "--forget", daemon.host, client_dir=client_dir).returncode == 0
    assert json.loads(ctl("known-hosts", "--json", client_dir=client_dir).stdout)["hosts"] == []
    assert ctl("known-hosts", "--forget", daemon.host, client_dir=client_dir).returncode == 1


def test_keygen_creates_shows_and_rotates(client_dir: Path) -> None:
    """keygen makes a 0600 key once, shows it after, and --force replaces it keeping the old one."""
    first = json.loads(ctl("keygen", "--json", client_dir=client_dir).stdout)
    assert first["new"] is True
    assert (client_dir / "client.key_secret").stat().st_mode & 0o777 == 0o600
    again = json.loads(ctl("keygen", "--json", client_dir=client_dir).stdout)
    assert again == {**first, "new": False}
    rotated = json.loads(ctl("keygen", "--force", "--json", client_dir=client_dir).stdout)
    assert rotated["fingerprint"] != first["fingerprint"]
    assert len(list(client_dir.glob("client.key_secret.*.old"))) == 1


def test_watch_prints_host_status(daemon: Daemon, client_dir: Path) -> None:
    """watch --count 1 --json prints one host_status event as a JSON line."""
    result = ctl("watch", daemon.host, "--count", "1", "--trust", "--json", client_dir=client_dir)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["topic"] == "host_status"
    assert event["content"]["cpus"] >= 1


@pytest.mark.parametrize("command", ["info", "ping", "watch"])
def test_error_is_reported_as_json(client_dir: Path, command: str) -> None:
    """With --json, a failure still prints one JSON document naming the error code."""
    result = ctl(command, "127.0.0.1:1", "--json", "--timeout", "0.5", client_dir=client_dir)
    assert result.returncode == 3
    assert json.loads(result.stdout)["error"] == ErrorCode.UNREACHABLE

"""The ``ssd`` command: init, config, run's refusals, as an administrator meets them."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from support.daemon import start_daemon


def ssd(*args: str, tmp: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``ssd`` with server directories under *tmp*."""
    full_env = {
        **os.environ,
        "SSD_CONFIG_DIR": str(tmp / "cfg"),
        "SSD_STATE_DIR": str(tmp / "state"),
        **(env or {}),
    }
    return subprocess.run(
        [str(Path(sys.executable).with_name("ssd")), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp,
    )


def test_init_makes_keys_config_and_state(tmp_path: Path) -> None:
    """ssd init creates a 0600 secret key, a valid config file and a 0700 state directory, once."""
    first = ssd("init", tmp=tmp_path)
    assert first.returncode == 0, first.stderr
    cfg, state = tmp_path / "cfg", tmp_path / "state"
    assert (cfg / "server.key_secret").stat().st_mode & 0o777 == 0o600
    assert (cfg / "server.key").exists()
    assert state.stat().st_mode & 0o777 == 0o700
    assert set(tomllib.loads((cfg / "ssd.toml").read_text())) >= {"server", "workers", "discovery", "auth"}
    assert "fingerprint:  SHA256:" in first.stdout
    secret = (cfg / "server.key_secret").read_bytes()
    again = ssd("init", tmp=tmp_path)
    assert again.returncode == 0
    assert "nothing (already initialized)" in again.stdout
    assert (cfg / "server.key_secret").read_bytes() == secret


def test_system_mode_needs_root(tmp_path: Path) -> None:
    """Without root, --system says so and shows the sudo command."""
    if os.geteuid() == 0:
        # Drop to nobody for this one command: the check is about the effective uid.
        result = subprocess.run(
            [str(Path(sys.executable).with_name("ssd")), "init", "--system"],
            capture_output=True,
            text=True,
            timeout=30,
            user="nobody",
            cwd="/",
        )
    else:
        result = ssd("init", "--system", tmp=tmp_path)
    assert result.returncode == 1
    assert "sudo ssd init --system" in result.stderr


def test_config_prints_every_key(tmp_path: Path) -> None:
    """ssd config prints a commented TOML reference that names every section."""
    result = ssd("config", tmp=tmp_path)
    assert result.returncode == 0
    for name in ("[server]", "[workers]", "[discovery]", "# port = 9470", "max_inflight_per_client"):
        assert name in result.stdout


def test_bad_config_stops_start_with_the_reason(tmp_path: Path) -> None:
    """An unknown key or a bad environment override stops `ssd run` with exit 2 naming it."""
    assert ssd("init", tmp=tmp_path).returncode == 0
    (tmp_path / "cfg" / "ssd.toml").write_text("[server]\nprot = 1\n")
    result = ssd("run", "--bind", "127.0.0.1", "--port", "0", tmp=tmp_path)
    assert result.returncode == 2
    assert "prot" in result.stderr
    (tmp_path / "cfg" / "ssd.toml").write_text("")
    bad_env = ssd("run", "--port", "0", tmp=tmp_path, env={"SSD_SERVER_HWM": "lots"})
    assert bad_env.returncode == 2
    assert "server.hwm" in bad_env.stderr


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    """A second daemon on a taken port exits 1 saying which address could not be bound."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = start_daemon(tmp_path / "a")
    try:
        result = ssd("run", "--bind", "127.0.0.1", "--port", str(first.port), tmp=tmp_path / "b")
        assert result.returncode == 1
        assert f"cannot bind 127.0.0.1:{first.port}" in result.stderr
    finally:
        assert first.stop() == 0

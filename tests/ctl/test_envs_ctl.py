"""ssd-ctl envs as a person reads it: the Spyder column says which envs serve Spyder, and why one cannot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from envfixtures import broken_kernel_venv, conda_copy, kernel_venv
from support.daemon import start_daemon

CTL = [sys.executable, "-m", "ssd.ctl.main"]


def _ctl(client_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SSD_CLIENT_DIR": str(client_dir), "COLUMNS": "400"}
    result = subprocess.run(
        [*CTL, *args], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, result.stderr
    return result


def test_envs_shows_the_reason_a_broken_env_cannot_serve_spyder(tmp_path: Path) -> None:
    """A real env of spyder-kernels 3.1.6 + IPython 9.18.1 is "broken", with reason and fix; a pinned one is 6.1.x."""
    envs = tmp_path / "envs"
    conda_copy(broken_kernel_venv(), envs / "broken")
    conda_copy(kernel_venv(), envs / "good")
    daemon = start_daemon(tmp_path, extra_env={"SSD_ENVS_ENVS_DIRS": str(envs), "SSD_ENVS_KNOWN_ROOTS": "false"})
    client = tmp_path / "client"
    try:
        daemon.authorize(json.loads(_ctl(client, "keygen", "--json").stdout)["public_key"].encode())
        _ctl(client, "login", daemon.host, "--key-only", "--trust", "--json")
        table = _ctl(client, "envs", daemon.host, "--timeout", "60").stdout
        listed = {e["name"]: e for e in json.loads(_ctl(client, "envs", daemon.host, "--json").stdout)["envs"]}
    finally:
        daemon.stop_and_check()
    rows = {line.split()[1]: line for line in table.splitlines() if line.startswith("│ ") and "/envs/" in line}
    assert "broken (see below)" in rows["broken"]
    assert "6.1.x" in rows["good"]
    reason = f"broken ({envs / 'broken'}) cannot serve Spyder: IPython 9.18.1 breaks spyder-kernels 3.1.6"
    assert reason in table
    assert "install ipython<9.18" in table
    assert listed["broken"]["spyder_problem"].endswith("install ipython<9.18")
    assert (listed["good"]["spyder_problem"], listed["good"]["spyder_versions"]) == (None, ["6.1.x"])

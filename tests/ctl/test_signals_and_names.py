"""Interrupts and hostile server strings: clean exits, no tracebacks, no spoofed output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from support.daemon import start_daemon

CTL = [sys.executable, "-m", "ssd.ctl.main"]


def test_ctrl_c_on_watch_exits_130_without_traceback(tmp_path: Path) -> None:
    """SIGINT while watching events ends ssd-ctl with 130 and no traceback."""
    daemon = start_daemon(tmp_path)
    env = {**os.environ, "SSD_CLIENT_DIR": str(tmp_path / "client")}
    try:
        watcher = subprocess.Popen(
            [*CTL, "watch", daemon.host, "--trust", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert watcher.stdout is not None
        first = watcher.stdout.readline()  # one event arrived: the watch loop is running
        assert '"topic": "host_status"' in first
        watcher.send_signal(signal.SIGINT)
        _, err = watcher.communicate(timeout=10)
        assert watcher.returncode == 130, err
        assert "Traceback" not in err
    finally:
        assert daemon.stop() == 0


def test_daemon_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    """Ctrl-C on `ssd run` is a normal stop: exit 0."""
    daemon = start_daemon(tmp_path, extra_env={"SSD_WORKERS_DIAG": "true"})
    daemon.process.send_signal(signal.SIGINT)
    assert daemon.process.wait(10) == 0, daemon.log()
    assert "Traceback" not in daemon.log()


def test_server_name_is_shown_literally(tmp_path: Path) -> None:
    """A server name with markup or a fake row is printed as text, not interpreted."""
    name = "evil[/][bold]fingerprint SHA256:FAKE"
    daemon = start_daemon(tmp_path, args=["--name", name])
    env = {**os.environ, "SSD_CLIENT_DIR": str(tmp_path / "client"), "COLUMNS": "200"}
    try:
        result = subprocess.run(
            [*CTL, "info", daemon.host, "--trust"], env=env, capture_output=True, text=True, timeout=30
        )
    finally:
        assert daemon.stop() == 0
    assert result.returncode == 0, result.stderr
    assert name in result.stdout
    assert "Traceback" not in result.stderr

"""``ssd doctor``: all ok on a healthy, running install; on a broken one it names each problem and its fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support.ci import require_root
from support.daemon import Daemon
from users import chown_tree, users

SSD = str(Path(sys.executable).with_name("ssd"))


def environment(tmp: Path, **extra: str) -> dict[str, str]:
    """Server directories under *tmp*, host_status every half second."""
    return {
        **os.environ,
        "SSD_CONFIG_DIR": str(tmp / "server-config"),
        "SSD_STATE_DIR": str(tmp / "server-state"),
        "SSD_SERVER_STATUS_INTERVAL": "0.5",
        **extra,
    }


def doctor(tmp: Path, *args: str, **extra: str) -> tuple[int, dict[str, dict[str, str]]]:
    """Run ``ssd doctor --mode user --json``; return the exit code and the findings by check name."""
    result = subprocess.run(
        [SSD, "doctor", "--mode", "user", "--json", *args],
        env=environment(tmp, **extra),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    report = json.loads(result.stdout)
    return result.returncode, {f["check"]: f for f in report["checks"]}


def start_announcing_daemon(tmp: Path) -> Daemon:
    """``python -m ssd`` on loopback with zeroconf on (announced on 127.0.0.1 only)."""
    log_path = tmp / "daemon.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ssd", "--bind", "127.0.0.1", "--port", "0"],
            env=environment(tmp),
            cwd=tmp,
            stdout=log,
            stderr=log,
        )
    return Daemon(process, tmp / "server-config", tmp / "server-state", log_path).wait_ready()


def test_healthy_install_is_all_ok(tmp_path: Path) -> None:
    """A running daemon: every check ok, or not checked with a reason; exit 0; the text says all ok."""
    daemon = start_announcing_daemon(tmp_path)
    try:
        code, found = doctor(tmp_path)
        problems = {name: f for name, f in found.items() if f["status"] == "problem"}
        assert code == 0, problems
        for name in (
            "config",
            "server key",
            "certificate",
            "PAM service",
            "daemon",
            "ports",
            "workers",
            "announcement",
        ):
            assert found[name]["status"] == "ok", found[name]
        assert found["environments"]["status"] == "not checked"
        text = subprocess.run(
            [SSD, "doctor", "--mode", "user"], env=environment(tmp_path), capture_output=True, text=True, timeout=120
        )
        assert text.returncode == 0
        assert text.stdout.rstrip().endswith("all ok")
        assert "problem" not in text.stdout
    finally:
        daemon.stop_and_check()


def test_broken_install_names_problems_and_fixes(tmp_path: Path) -> None:
    """Loose key permissions, a missing PAM service, no daemon: each a problem with its fix; exit 1."""
    subprocess.run([SSD, "init"], env=environment(tmp_path), check=True, capture_output=True, timeout=60)
    secret = tmp_path / "server-config" / "server.key_secret"
    secret.chmod(0o644)
    code, found = doctor(tmp_path, SSD_AUTH_PAM_SERVICE="ssd-no-such-service")
    assert code == 1
    assert found["server key"]["status"] == "problem"
    assert "accessible by others" in found["server key"]["detail"]
    assert found["server key"]["fix"] == f"chmod 600 {secret}"
    assert found["PAM service"]["status"] == "problem"
    assert "ssd-no-such-service" in found["PAM service"]["detail"]
    assert "/etc/pam.d/ssd-no-such-service" in found["PAM service"]["fix"]
    assert found["daemon"]["status"] == "problem"
    assert "ssd run" in found["daemon"]["fix"]
    assert found["workers"]["status"] == "not checked"
    secret.chmod(0o600)
    code, found = doctor(tmp_path)
    assert found["server key"]["status"] == "ok"
    assert found["PAM service"]["status"] == "ok"


def test_certificate_for_another_key_is_a_problem(tmp_path: Path) -> None:
    """A certificate that does not bind the server key: the certificate line says so and how to fix it."""
    env = environment(tmp_path)
    subprocess.run([SSD, "init"], env=env, check=True, capture_output=True, timeout=60)
    other = tmp_path / "other"
    subprocess.run(
        [SSD, "init"], env={**env, "SSD_CONFIG_DIR": str(other)}, check=True, capture_output=True, timeout=60
    )
    (tmp_path / "server-config" / "server.crt").write_bytes((other / "server.crt").read_bytes())
    code, found = doctor(tmp_path)
    assert code == 1
    assert found["certificate"]["status"] == "problem"
    assert "is for another key" in found["certificate"]["detail"]
    assert "ssd cert" in found["certificate"]["fix"]


def test_environments_of_a_user_are_listed_as_that_user(tmp_path: Path) -> None:
    """--user NAME: discovery runs as NAME and finds the venv in their home; a user without any is a problem."""
    require_root()
    subprocess.run([SSD, "init"], env=environment(tmp_path), check=True, capture_output=True, timeout=60)
    with users(2) as (alice, bob):
        venv = alice.home / ".venvs" / "analysis"
        subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
        chown_tree(alice.home / ".venvs", alice)
        # Root could read this one; alice cannot: it must not be listed.
        hidden = alice.home / ".venvs" / "rootonly"
        subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(hidden)], check=True, timeout=120)
        hidden.chmod(0o700)
        _, found = doctor(tmp_path, "--user", alice.name)
        assert found["environments"]["status"] == "ok", found["environments"]
        assert "1 for" in found["environments"]["detail"]
        assert "analysis" in found["environments"]["detail"]
        assert "rootonly" not in found["environments"]["detail"]
        _, found = doctor(tmp_path, "--user", bob.name)
        assert found["environments"]["status"] == "problem"
        assert f"none found for {bob.name}" in found["environments"]["detail"]

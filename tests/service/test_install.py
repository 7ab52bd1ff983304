"""``ssd install`` / ``ssd uninstall``: files, owners and modes in a staging root, a unit that
``systemd-analyze verify`` accepts, enabling, removal that keeps data unless --purge."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.ci import IN_CI, require_root

from ssd import keys

SSD = str(Path(sys.executable).with_name("ssd"))
UNIT = Path("etc/systemd/system/ssd.service")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without SSD_* directory overrides (install must use the mode's own paths)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSD_", "XDG_"))}
    return {**env, **extra}


def ssd(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``ssd``; never raise on a failure (the tests read the exit code and the words)."""
    return subprocess.run(
        [SSD, *args], env=env or clean_env(), capture_output=True, text=True, timeout=120, cwd=cwd or "/", check=False
    )


def need_tool(name: str) -> str:
    """The path of a tool; skip without it, except under CI (where .ci/run installs it)."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is missing under CI=true; .ci/run installs it")
        pytest.skip(f"{name} is not installed")
    return path


def mode_and_owner(path: Path) -> tuple[int, int, int]:
    """(permission bits, uid, gid) of *path*."""
    info = path.lstat()
    return info.st_mode & 0o7777, info.st_uid, info.st_gid


def exec_start(lines: list[str]) -> list[str]:
    """ExecStart's arguments after the interpreter, checked to be this venv's Python (as `ssd` runs it)."""
    argv = shlex.split(next(line for line in lines if line.startswith("ExecStart=")).removeprefix("ExecStart="))
    python = Path(argv[0])
    assert python.parent == Path(sys.executable).parent
    assert python.resolve() == Path(sys.executable).resolve()
    return argv[1:]


def verify_unit(unit: Path, *extra: str, env: dict[str, str] | None = None) -> None:
    """``systemd-analyze verify`` must exit 0 and say nothing about this unit (it only warns on bad keys)."""
    result = subprocess.run(
        [need_tool("systemd-analyze"), *extra, "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    complaints = [line for line in result.stderr.splitlines() if unit.name in line]
    assert not complaints, complaints


def test_system_install_into_a_root(tmp_path: Path) -> None:
    """install --system --root DIR --no-enable: every file with root as owner and the right mode; nothing enabled."""
    require_root()
    result = ssd("install", "--system", "--root", str(tmp_path), "--no-enable")
    assert result.returncode == 0, result.stderr
    expected = {
        "etc/ssd": 0o755,
        "etc/ssd/ssd.toml": 0o600,
        "etc/ssd/server.key_secret": 0o600,
        "etc/ssd/server.key": 0o644,
        "etc/ssd/server.crt.key": 0o600,
        "etc/ssd/server.crt": 0o644,
        "var/lib/ssd": 0o700,
        "var/log/ssd": 0o750,
        str(UNIT): 0o644,
    }
    for relative, mode in expected.items():
        assert mode_and_owner(tmp_path / relative) == (mode, 0, 0), relative
    assert not (tmp_path / "etc/systemd/system/multi-user.target.wants").exists()
    assert "systemctl --root=" in result.stdout  # the command to enable it later
    assert keys.load_keypair(tmp_path / "etc/ssd/server").fingerprint


def test_system_unit_content_and_verify(tmp_path: Path) -> None:
    """The unit: Type=notify, this Python, Restart=on-failure, KillMode=process, no privilege-breaking options."""
    require_root()
    assert ssd("install", "--system", "--root", str(tmp_path), "--no-enable").returncode == 0
    unit = tmp_path / UNIT
    lines = [line for line in unit.read_text().splitlines() if line and not line.startswith("#")]
    assert exec_start(lines) == ["-I", "-m", "ssd", "--system"]
    for wanted in (
        "Type=notify",
        "Restart=on-failure",
        "KillMode=process",
        "WantedBy=multi-user.target",
        "StateDirectoryMode=0700",
    ):
        assert wanted in lines, wanted
    keys_used = {line.split("=", 1)[0] for line in lines if "=" in line}
    # Each of these would break dropping privileges or what users' kernels may do.
    forbidden = {"User", "NoNewPrivileges", "CapabilityBoundingSet", "ProtectHome", "PrivateDevices", "PrivateTmp"}
    assert not keys_used & forbidden
    verify_unit(unit)


def test_install_again_keeps_the_identity(tmp_path: Path) -> None:
    """A second install keeps the server's keys and certificate (clients pinned them)."""
    require_root()
    assert ssd("install", "--system", "--root", str(tmp_path), "--no-enable").returncode == 0
    first = keys.load_keypair(tmp_path / "etc/ssd/server").fingerprint
    cert = (tmp_path / "etc/ssd/server.crt").read_bytes()
    again = ssd("install", "--system", "--root", str(tmp_path), "--no-enable")
    assert again.returncode == 0, again.stderr
    assert keys.load_keypair(tmp_path / "etc/ssd/server").fingerprint == first
    assert (tmp_path / "etc/ssd/server.crt").read_bytes() == cert


def test_enable_in_a_root_then_uninstall_and_purge(tmp_path: Path) -> None:
    """install (enable below the root), uninstall (unit and link gone, data kept), uninstall --purge (all gone)."""
    require_root()
    need_tool("systemctl")
    installed = ssd("install", "--system", "--root", str(tmp_path))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    link = tmp_path / "etc/systemd/system/multi-user.target.wants/ssd.service"
    assert link.is_symlink()
    assert os.readlink(link) == "/etc/systemd/system/ssd.service"
    removed = ssd("uninstall", "--system", "--root", str(tmp_path))
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not (tmp_path / UNIT).exists()
    assert not link.exists()
    assert not link.is_symlink()
    for kept in ("etc/ssd/server.key_secret", "etc/ssd/server.crt", "var/lib/ssd"):
        assert (tmp_path / kept).exists(), kept
    assert "--purge" in removed.stdout
    purged = ssd("uninstall", "--system", "--root", str(tmp_path), "--purge")
    assert purged.returncode == 0, purged.stderr
    for gone in ("etc/ssd", "var/lib/ssd", "var/log/ssd"):
        assert not (tmp_path / gone).exists(), gone


def test_system_install_needs_root(tmp_path: Path) -> None:
    """Without root: a clear message with the exact sudo command, and nothing written."""
    if os.geteuid() == 0:
        result = subprocess.run(
            [SSD, "install", "--system", "--root", str(tmp_path / "r")],
            capture_output=True,
            text=True,
            timeout=60,
            user="nobody",
            cwd="/",
            env=clean_env(),
            check=False,
        )
    else:
        result = ssd("install", "--system", "--root", str(tmp_path / "r"))
    assert result.returncode != 0
    assert f"sudo ssd install --system --root {tmp_path / 'r'}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment for a user whose home is *home* (XDG defaults below it)."""
    return clean_env(HOME=str(home), **extra)


def test_user_install_files_and_unit(tmp_path: Path) -> None:
    """install --user --no-enable: private config and state dirs, 0600 keys, a user unit that verifies."""
    home = tmp_path / "home"
    home.mkdir()
    result = ssd("install", "--user", "--no-enable", env=user_env(home))
    assert result.returncode == 0, result.stderr
    cfg, state = home / ".config/ssd", home / ".local/state/ssd"
    assert mode_and_owner(cfg)[0] == 0o700
    assert mode_and_owner(state)[0] == 0o700
    assert mode_and_owner(cfg / "server.key_secret")[0] == 0o600
    assert mode_and_owner(cfg / "server.crt.key")[0] == 0o600
    unit = home / ".config/systemd/user/ssd.service"
    text = unit.read_text()
    assert exec_start(text.splitlines()) == ["-I", "-m", "ssd", "--user"]
    assert "Type=notify" in text
    assert "WantedBy=default.target" in text
    assert "systemctl --user enable --now ssd.service" in result.stdout
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    verify_unit(unit, "--user", env=user_env(home, XDG_RUNTIME_DIR=str(runtime)))


def test_user_install_without_systemctl_says_what_to_run(tmp_path: Path) -> None:
    """With no systemctl on PATH: files are written, exit 1, a clear message and the commands; no traceback."""
    home, empty = tmp_path / "home", tmp_path / "empty-bin"
    home.mkdir()
    empty.mkdir()
    result = ssd("install", "--user", env=user_env(home, PATH=str(empty)))
    assert result.returncode == 1
    assert "not enabled" in result.stderr
    assert "systemctl is not installed here" in result.stderr
    assert "systemctl --user enable --now ssd.service" in result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    assert (home / ".config/systemd/user/ssd.service").exists()


def test_user_uninstall_keeps_data_unless_purge(tmp_path: Path) -> None:
    """uninstall --user removes the unit and keeps keys and state; --purge removes them too."""
    home, empty = tmp_path / "home", tmp_path / "empty-bin"
    home.mkdir()
    empty.mkdir()
    env = user_env(home, PATH=str(empty))
    assert ssd("install", "--user", "--no-enable", env=env).returncode == 0
    kept = ssd("uninstall", "--user", env=env)
    assert not (home / ".config/systemd/user/ssd.service").exists()
    assert (home / ".config/ssd/server.key_secret").exists()
    assert "Traceback" not in kept.stderr
    purged = ssd("uninstall", "--user", "--purge", env=env)
    assert "Traceback" not in purged.stderr
    assert not (home / ".config/ssd").exists()
    assert not (home / ".local/state/ssd").exists()

"""``ssd install`` and ``ssd uninstall``: the daemon as a systemd service, system-wide or for one user.

Install makes what ``ssd init`` makes (config file, keys, certificate, state
directory), the log directory and the unit, then enables and starts the unit
unless told not to. *root* is an install prefix, as DESTDIR is for ``make
install``: files go below it, while the unit names the paths of the running
system. Uninstall removes the unit and keeps the server's identity (keys and
certificate), its configuration and its state unless ``purge`` says otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import platformdirs

from ssd import certs, config, configdoc, keys
from ssd.errors import ErrorCode, SSDError
from ssd.files import write_atomic
from ssd.paths import APP, SYSTEM_UNIT_DIR, UNIT_NAME, Mode, ServerPaths, server_paths, user_unit_dir
from ssd.service.unit import system_unit, user_unit

__all__ = ["InstallReport", "initialize", "install", "uninstall", "unit_path"]

Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


@dataclass
class InstallReport:
    """What install or uninstall did, and what a person still has to do."""

    made: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    unit: Path | None = None
    enabled: bool = False
    problem: str = ""  # set when the unit could not be enabled or stopped
    todo: list[str] = field(default_factory=list)  # commands to run by hand

    @property
    def ok(self) -> bool:
        """True when nothing is left undone by a failure."""
        return not self.problem


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def initialize(paths: ServerPaths) -> list[str]:
    """Create config dir, config file, keypair, certificate and state dir where missing; return what was made."""
    made = []
    private = 0o700 if paths.mode == "user" else 0o755
    for directory, mode in ((paths.config_dir, private), (paths.state_dir, 0o700)):
        if not directory.exists():
            directory.mkdir(parents=True, mode=mode)
            made.append(str(directory))
    if not paths.config_file.exists():
        _write_private(paths.config_file, configdoc.default_toml())
        made.append(str(paths.config_file))
    pair, created = keys.load_or_create_keypair(paths.key_stem)
    if created:
        made.append(f"{paths.key_stem}.key_secret")
    name = config.load_config(paths.config_file).server.name
    made += certs.ensure_certificate(paths.cert_file, paths.cert_key_file, pair.public, certs.host_names(name))
    return made


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _below(root: Path | None, path: Path) -> Path:
    return path if root is None else root / path.relative_to(path.anchor)


def _rooted(paths: ServerPaths, root: Path | None) -> ServerPaths:
    log_dir = None if paths.log_dir is None else _below(root, paths.log_dir)
    return replace(
        paths, config_dir=_below(root, paths.config_dir), state_dir=_below(root, paths.state_dir), log_dir=log_dir
    )


def _user_defaults() -> ServerPaths:
    return ServerPaths(
        "user",
        Path(platformdirs.user_config_dir(APP)),
        Path(platformdirs.user_state_dir(APP)),
        Path(platformdirs.user_log_dir(APP)),
    )


def unit_path(mode: Mode, root: Path | None = None) -> Path:
    """Where the unit file of *mode* goes (below *root* if given)."""
    return _below(root, SYSTEM_UNIT_DIR / UNIT_NAME if mode == "system" else user_unit_dir() / UNIT_NAME)


def _systemctl(mode: Mode, root: Path | None) -> list[str]:
    base = ["systemctl"]
    if mode == "user":
        base.append("--user")
    if root is not None:
        base.append(f"--root={root}")
    return base


def install(
    mode: Mode,
    *,
    root: Path | None = None,
    enable: bool = True,
    python: Path | None = None,
    run: Runner = _run,
) -> InstallReport:
    """Install the daemon for *mode*: directories, config, keys, certificate, unit; enable unless told not to."""
    if mode == "system" and os.geteuid() != 0:
        raise SSDError(f"installing the system service needs root; run: sudo {_command()}", code=ErrorCode.NOT_ROOT)
    paths = server_paths(mode)
    local = _rooted(paths, root)
    report = InstallReport(made=initialize(local))
    if local.log_dir is not None and not local.log_dir.exists():
        local.log_dir.mkdir(parents=True, mode=0o750 if mode == "system" else 0o700)
        report.made.append(str(local.log_dir))
    if mode == "system":
        _fix_system_modes(local)
    python = python or Path(sys.executable)
    text = system_unit(python, paths) if mode == "system" else user_unit(python, paths, _user_defaults())
    report.unit = unit_path(mode, root)
    report.unit.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    _write_public(report.unit, text)
    report.made.append(str(report.unit))
    _enable(report, mode, root, enable, run)
    return report


def _fix_system_modes(paths: ServerPaths) -> None:
    """Root owns everything; the state stays private; keys were made 0600 by keys.create_keypair."""
    for directory, mode in ((paths.config_dir, 0o755), (paths.state_dir, 0o700), (paths.log_dir, 0o750)):
        if directory is not None:
            os.chown(directory, 0, 0)
            os.chmod(directory, mode)


def _write_public(path: Path, text: str) -> None:
    write_atomic(path, text, mode=0o644, durable=True)


def _enable_commands(mode: Mode, root: Path | None) -> list[list[str]]:
    systemctl = _systemctl(mode, root)
    if root is not None:  # a prefix is not the running system: link the unit, start nothing
        return [[*systemctl, "enable", UNIT_NAME]]
    return [[*systemctl, "daemon-reload"], [*systemctl, "enable", "--now", UNIT_NAME]]


def _enable(report: InstallReport, mode: Mode, root: Path | None, enable: bool, run: Runner) -> None:
    commands = _enable_commands(mode, root)
    if not enable:
        report.todo = [_shell(c, mode) for c in commands]
        return
    for argv in commands:
        failure = _try(argv, run)
        if failure:
            report.problem = f"the unit is written but not enabled: `{' '.join(argv)}` failed: {failure}"
            report.todo = [_shell(c, mode) for c in commands]
            return
    report.enabled = True


def _try(argv: list[str], run: Runner) -> str:
    """Run a command; return why it failed, or ''."""
    if shutil.which(argv[0]) is None:
        return f"{argv[0]} is not installed here"
    try:
        result = run(argv)
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    if result.returncode == 0:
        return ""
    said = (result.stderr or result.stdout).strip().splitlines()
    return said[-1] if said else f"exit code {result.returncode}"


def _shell(argv: list[str], mode: Mode) -> str:
    prefix = "sudo " if mode == "system" and os.geteuid() != 0 else ""
    return prefix + " ".join(argv)


def _command() -> str:
    return " ".join(["ssd", *sys.argv[1:]]) if sys.argv[1:] else "ssd install --system"


def uninstall(mode: Mode, *, root: Path | None = None, purge: bool = False, run: Runner = _run) -> InstallReport:
    """Disable and remove the unit; with *purge* also the config (keys, certificate), state and log directories."""
    if mode == "system" and os.geteuid() != 0:
        raise SSDError(f"removing the system service needs root; run: sudo {_command()}", code=ErrorCode.NOT_ROOT)
    report = InstallReport()
    unit = unit_path(mode, root)
    if unit.exists():
        systemctl = _systemctl(mode, root)
        disable = [*systemctl, "disable", *([] if root is not None else ["--now"]), UNIT_NAME]
        failure = _try(disable, run)
        if failure:
            report.problem = f"`{' '.join(disable)}` failed: {failure}; the unit file is removed anyway"
            report.todo.append(_shell(disable, mode))
        unit.unlink()
        report.removed.append(str(unit))
        if root is None:
            _try([*systemctl, "daemon-reload"], run)  # forgets the removed unit; harmless if it fails
    local = _rooted(server_paths(mode), root)
    for directory in (local.config_dir, local.state_dir, local.log_dir):
        if directory is None or not directory.exists():
            continue
        if purge:
            shutil.rmtree(directory)
            report.removed.append(str(directory))
        else:
            report.kept.append(str(directory))
    return report

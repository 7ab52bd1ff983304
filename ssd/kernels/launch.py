"""Launching a kernel: its command line, its environment, its folder, its connection file.

Everything a client asks for is checked here before a process exists: the
kind against the environment's packages, the working folder against what the
user may enter, each variable against the allow-list.
"""

from __future__ import annotations

import fnmatch
import json
import os
import resource
import secrets
import subprocess
from pathlib import Path
from typing import Any

from jupyter_client.connect import write_connection_file
from jupyter_core.paths import jupyter_runtime_dir

from ssd.envs import EnvInfo
from ssd.errors import ErrorCode, SSDError
from ssd.files import write_atomic
from ssd.kernels import sockdir
from ssd.kernels.record import KernelRecord

__all__ = [
    "check_cwd",
    "check_env_vars",
    "command",
    "kernel_environment",
    "log_tail",
    "new_connection_file",
    "require_package",
    "runtime_dir",
    "spawn",
    "write_kernel_file",
]

_BASE_PATH = "/usr/local/bin:/usr/bin:/bin"
# Passed from the worker's own (clean) environment to every kernel.
_INHERITED = ("HOME", "USER", "LOGNAME", "SHELL", "LANG", "XDG_RUNTIME_DIR")

_PACKAGES = {"spyder": ("spyder_kernels", "spyder-kernels"), "ipykernel": ("ipykernel", "ipykernel")}


def require_package(env: EnvInfo, kind: str) -> None:
    """Refuse an environment that lacks the kernel package of *kind*, naming the fix."""
    field, package = _PACKAGES[kind]
    if getattr(env, field) is None:
        fix = f"ssd-ctl env install HOST {env.name or env.prefix} {package}"
        if kind == "spyder":
            fix += "  (or --spyder YOUR_SPYDER_VERSION for the matching version)"
        raise SSDError(
            f"environment {env.name or env.prefix} has no {package}; install it with: {fix}",
            code=ErrorCode.KERNEL_PACKAGE_MISSING,
        )
    if env.python is None or not os.access(Path(env.prefix) / "bin" / "python", os.X_OK):
        raise SSDError(f"environment {env.prefix} has no runnable bin/python", code=ErrorCode.KERNEL_PACKAGE_MISSING)


def command(env: EnvInfo, kind: str, connection_file: str) -> list[str]:
    """The kernel's argv, run with the environment's own Python."""
    python = str(Path(env.prefix) / "bin" / "python")
    if kind == "spyder":
        # Spyder's debugger needs frozen modules off (Python 3.11+ warns otherwise).
        return [python, "-Xfrozen_modules=off", "-m", "spyder_kernels.console", "-f", connection_file]
    return [python, "-m", "ipykernel_launcher", "-f", connection_file]


def check_cwd(requested: str | None, home: str) -> str:
    """The folder the kernel starts in: an existing directory this user may enter (default: home)."""
    path = Path(os.path.expanduser(requested) if requested else home)
    if not path.is_absolute():
        path = Path(home) / path
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise SSDError(f"working folder {str(path)!r} does not exist", code=ErrorCode.CWD_REFUSED) from None
    # The worker runs as the user, so access() answers with exactly the user's rights.
    if not real.is_dir() or not os.access(real, os.R_OK | os.X_OK):
        raise SSDError(f"working folder {str(path)!r} is not a folder you may enter", code=ErrorCode.CWD_REFUSED)
    return str(real)


def check_env_vars(requested: dict[str, str], allow: list[str]) -> dict[str, str]:
    """Refuse any variable whose name no allow-list pattern matches, naming them all."""
    refused = sorted(name for name in requested if not any(fnmatch.fnmatchcase(name, p) for p in allow))
    if refused:
        raise SSDError(
            f"variables not allowed for kernels on this host: {', '.join(refused)} "
            f"(allowed: {', '.join(allow) or 'none'})",
            code=ErrorCode.ENV_VAR_REFUSED,
        )
    return dict(requested)


def kernel_environment(env: EnvInfo, extra: dict[str, str], base: dict[str, str]) -> dict[str, str]:
    """A clean environment with the conda environment (or venv) activated, plus the allowed extras."""
    environ = {name: base[name] for name in _INHERITED if name in base}
    environ.setdefault("LANG", "C.UTF-8")
    environ.update(extra)
    prefix = env.prefix
    environ["PATH"] = f"{prefix}/bin:{_BASE_PATH}"
    if env.kind == "conda":
        environ["CONDA_PREFIX"] = prefix
        environ["CONDA_DEFAULT_ENV"] = env.name or prefix
        environ["CONDA_SHLVL"] = "1"
    else:
        environ["VIRTUAL_ENV"] = prefix
    return environ


def runtime_dir() -> Path:
    """The user's Jupyter runtime folder (0700), where connection files live."""
    path = Path(jupyter_runtime_dir())
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def new_connection_file(kernel_id: str, transport: str, ip: str) -> tuple[str, dict[str, Any]]:
    """Write a 0600 connection file with a fresh key and fresh ports (TCP on *ip*), or ``ipc`` sockets in a new
    0700 folder of this user; return its path and content."""
    path = runtime_dir() / f"kernel-ssd-{kernel_id}.json"
    key = secrets.token_hex(32).encode()
    if transport == "ipc":
        ip = str(sockdir.new_private_dir() / "k")  # sockets k-1 ... k-5, as jupyter_client numbers them
    _, info = write_connection_file(str(path), ip=ip, key=key, transport=transport, signature_scheme="hmac-sha256")
    os.chmod(path, 0o600)
    return str(path), dict(info)


def write_kernel_file(path: str, info: dict[str, Any]) -> None:
    """(Re)write a kernel's own connection file, 0600, atomically."""
    write_atomic(path, json.dumps(info, indent=1))


def spawn(record: KernelRecord) -> subprocess.Popen[bytes]:
    """Start the kernel in its own session, output to its log file; it outlives this worker."""
    fd = os.open(record.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        process = _popen(record, fd)
    finally:
        os.close(fd)
    if record.memory_limit_mb:
        limit = record.memory_limit_mb * 1024 * 1024
        resource.prlimit(process.pid, resource.RLIMIT_AS, (limit, limit))
    return process


def _popen(record: KernelRecord, fd: int) -> subprocess.Popen[bytes]:
    """The kernel's process; a vanished environment or folder (a restart long after the start) is named."""
    try:
        return subprocess.Popen(  # argv built above, never through a shell
            record.argv,
            cwd=record.cwd,
            env=record.environ,
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            close_fds=True,
            start_new_session=True,
            umask=record.umask,
        )
    except OSError as exc:
        if not os.access(record.argv[0], os.X_OK):
            raise SSDError(
                f"environment {record.env_name or record.env} is gone from this host: {record.env} "
                "has no runnable bin/python any more",
                code=ErrorCode.ENV_NOT_FOUND,
            ) from None
        if not os.path.isdir(record.cwd):
            raise SSDError(f"the kernel's working folder {record.cwd!r} is gone", code=ErrorCode.CWD_REFUSED) from None
        raise SSDError(f"the kernel could not be started: {exc}", code=ErrorCode.KERNEL_START_FAILED) from None


def log_tail(path: str, lines: int = 15) -> str:
    """The last lines a kernel wrote (for a start that failed)."""
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 8192))
            text = log.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])

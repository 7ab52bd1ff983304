"""What the benchmarks share: a server in a child process, the daemon on loopback, a logged-in client.

Imported by the ``bench_*.py`` scripts, which Python runs with this folder first
on ``sys.path`` (``python benchmarks/bench_x.py``); not a benchmark itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import pwd
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import zmq

from ssd.client import Client, KnownHosts
from ssd.client.identity import client_keypair

START_TIMEOUT = 30.0  # seconds for a server to write its info file
STOP_TIMEOUT = 10.0  # seconds a server gets to exit after SIGTERM before it is killed
BASE_PYTHON = "/usr/bin/python3"
DAEMON_ARGV = [sys.executable, "-m", "ssd", "--bind", "127.0.0.1", "--port", "0", "--no-announce"]
T = TypeVar("T")


class BenchError(Exception):
    """A server failed to start or something answered wrongly; the run is void."""


@dataclass(frozen=True)
class Running:
    """A started server: its process, the info file it wrote, its log."""

    process: subprocess.Popen[bytes]
    info: dict[str, Any]
    log: Path

    @property
    def control_port(self) -> int:
        """The daemon's control port (from its daemon.json)."""
        return int(self.info["control_port"])


def progress(message: str) -> None:
    """Say what the run is doing, on stderr so that --json output stays clean."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a server's log."""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the caller's SSD_* settings, plus *extra*."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("SSD_")}, **extra}


def current_user() -> str:
    """The name of the user running the benchmark (the daemon in user mode lets only it log in)."""
    return pwd.getpwuid(os.geteuid()).pw_name


@contextlib.contextmanager
def server_process(
    name: str,
    command: list[str],
    env: dict[str, str],
    log_path: Path,
    info_path: Path,
    *,
    cwd: Path | None = None,
    new_session: bool = False,
) -> Iterator[Running]:
    """Start a server, wait for its info file, yield it; SIGTERM and wait on the way out."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=new_session
        )
    started = False
    try:
        info = wait_for_info(name, process, info_path, log_path)
        started = True
        yield Running(process, info, log_path)
    finally:
        stop_process(name, process, log_path, started=started)


def wait_for_info(name: str, process: subprocess.Popen[bytes], info_path: Path, log_path: Path) -> dict[str, Any]:
    """Return the server's info file once written; fail if it exits or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{name} exited with {process.returncode}:\n{tail(log_path)}")
        if info_path.exists():
            info: dict[str, Any] = json.loads(info_path.read_text())
            return info
        time.sleep(0.02)
    raise BenchError(f"{name} wrote no {info_path.name} within {START_TIMEOUT:g}s:\n{tail(log_path)}")


def stop_process(name: str, process: subprocess.Popen[bytes], log_path: Path, *, started: bool) -> None:
    """SIGTERM *process* and wait; kill it if it does not stop in time; report an unclean exit."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    elif not started:
        return  # wait_for_info already reported the failed start, with the log
    try:
        code = process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        progress(f"{name} did not stop within {STOP_TIMEOUT:g}s of SIGTERM; killed")
        return
    if code != 0:
        progress(f"{name} exited with {code}:\n{tail(log_path)}")


def config_dir(top: Path) -> Path:
    """The daemon's SSD_CONFIG_DIR (where the administrator's authorized keys are)."""
    return top / "cfg"


def daemon(top: Path, *, new_session: bool = False, **settings: str) -> contextlib.AbstractContextManager[Running]:
    """``python -m ssd`` in user mode on random loopback ports, its files in TOP; *settings*: more SSD_* variables.

    Its log is TOP/daemon.log. With *new_session*, Ctrl-C reaches the benchmark
    only, which can then shut its kernels down through the daemon.
    """
    state = top / "state"
    env = clean_env(SSD_CONFIG_DIR=str(config_dir(top)), SSD_STATE_DIR=str(state), **settings)
    log, info = top / "daemon.log", state / "daemon.json"
    return server_process("the daemon", DAEMON_ARGV, env, log, info, cwd=top, new_session=new_session)


def authorize(top: Path, user: str, public_key: bytes) -> None:
    """Append *public_key* to the administrator's authorized keys of *user* (0700 folder, 0600 file)."""
    keys = config_dir(top) / "authorized_keys.d" / user
    keys.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(keys, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as fh:
        fh.write(public_key + b"\n")


@contextlib.contextmanager
def logged_in(top: Path, running: Running, *, timeout: float = 60.0) -> Iterator[Client]:
    """A client (key in TOP/client) the administrator authorized for this user, logged in; closed on the way out."""
    identity = client_keypair(top / "client")
    user = current_user()
    authorize(top, user, identity.public)
    known_hosts = KnownHosts(top / "client" / "known_hosts")
    host = f"127.0.0.1:{running.control_port}"
    with Client(host, trust=True, identity=identity, known_hosts=known_hosts, timeout=timeout) as client:
        client.login(user)
        yield client


def kernel_env(top: Path, source: Path | None) -> Path:
    """TOP/envs/bench: a copy of *source*, or a new venv with spyder-kernels (and so ipykernel) from pip."""
    venv = top / "envs" / "bench"
    venv.parent.mkdir(exist_ok=True)
    if source is not None:
        progress(f"copying {source}")
        subprocess.run(["cp", "-a", str(source), str(venv)], check=True)
        return venv
    progress("building the environment with pip")
    subprocess.run([BASE_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q"]
    subprocess.run([*pip, "spyder-kernels==3.1.*"], check=True)
    return venv


def versions() -> dict[str, str]:
    """What the numbers depend on: Python, pyzmq, libzmq, CPUs, platform."""
    return {
        "python": platform.python_version(),
        "pyzmq": zmq.pyzmq_version(),
        "libzmq": zmq.zmq_version(),
        "cpus": str(os.cpu_count()),
        "platform": platform.platform(),
    }


def finish(
    name: str,
    produce: Callable[[], T],
    *,
    as_json: bool,
    show: Callable[[T], None],
    encode: Callable[[T], str] = lambda result: json.dumps(result, indent=2),
    failures: tuple[type[BaseException], ...] = (Exception,),
    log: Path | None = None,
) -> int:
    """Run *produce*, print its result (*encode*d with *as_json*, else *show*n); the exit status.

    1 when it failed with one of *failures* (said with the last lines of *log*,
    the daemon's, when there is one), 130 on Ctrl-C.
    """
    try:
        result = produce()
    except KeyboardInterrupt:
        print(f"{name}: interrupted; servers stopped", file=sys.stderr)
        return 130
    except failures as exc:
        said = f"{name}: {exc}"
        if log is not None and log.exists():
            said += f"\nthe daemon's log ends with:\n{tail(log, 40)}"
        print(said, file=sys.stderr)
        return 1
    if as_json:
        print(encode(result))
    else:
        show(result)
    return 0

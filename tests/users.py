"""Real Unix users for auth tests (useradd/chpasswd, removed with userdel -r), a system-mode
daemon, and the audit that no test password reaches a daemon's log or state store.

Every password a test gives a user or sends in a login is recorded in ``PASSWORDS``;
``audit`` checks a daemon's files against all of them.
"""

from __future__ import annotations

import os
import pwd
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.daemon import Daemon, start_daemon
from support.eventually import eventually

from ssd.client import Client
from ssd.errors import ErrorCode, RemoteError
from ssd.replies import LoginReply

# Every password the auth tests used, right or wrong: none may appear in a log or the state store.
PASSWORDS: list[str] = []
SSD = str(Path(sys.executable).with_name("ssd"))


@dataclass(frozen=True)
class User:
    """A test account and its password."""

    name: str
    password: str
    uid: int
    gid: int
    home: Path


def new_password() -> str:
    """A fresh, recognizable password (recorded for the audit)."""
    password = f"Pw-{secrets.token_urlsafe(12)}!"
    PASSWORDS.append(password)
    return password


def _run(*argv: str, stdin: str | None = None) -> None:
    subprocess.run(argv, input=stdin, text=True, capture_output=True, check=True, timeout=30)


def add_user(*, system: bool = False) -> User:
    """Create a user with a home (``useradd -m``; ``-r`` for a system account) and a password."""
    name = f"ssdt_{secrets.token_hex(4)}"
    password = new_password()
    _run("useradd", "-m", *(["-r"] if system else []), "-s", "/bin/sh", name)
    try:
        _run("chpasswd", stdin=f"{name}:{password}\n")
    except BaseException:
        remove_user(name)
        raise
    entry = pwd.getpwnam(name)
    return User(name, password, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))


def remove_user(name: str) -> None:
    """Delete *name* and its home, whatever state the test left it in: its processes are killed first, so
    that nothing of a failed test lives on under a uid the next test's user will get again."""
    subprocess.run(["pkill", "-KILL", "-U", name], capture_output=True, timeout=30, check=False)
    subprocess.run(["userdel", "-r", "-f", name], capture_output=True, timeout=30, check=False)


@contextmanager
def users(count: int, *, system: bool = False) -> Iterator[list[User]]:
    """*count* fresh users, removed afterwards even when the test failed."""
    made: list[User] = []
    try:
        for _ in range(count):
            made.append(add_user(system=system))
        yield made
    finally:
        for user in made:
            remove_user(user.name)


def start_system_daemon(tmp: Path, *, extra_env: dict[str, str] | None = None, init: bool = True) -> Daemon:
    """``ssd init --system`` (unless already done) and ``ssd run --system`` with directories under *tmp*."""
    env = {**os.environ, "SSD_CONFIG_DIR": str(tmp / "server-config"), "SSD_STATE_DIR": str(tmp / "server-state")}
    if init:
        subprocess.run([SSD, "init", "--system"], env=env, cwd=tmp, capture_output=True, check=True, timeout=30)
    return start_daemon(tmp, extra_env=extra_env, args=["--system", "--log-level", "debug"])


@contextmanager
def system_daemon(tmp: Path, extra_env: dict[str, str] | None = None) -> Iterator[Daemon]:
    """A system-mode daemon for one test, stopped (exit 0) and audited afterwards."""
    daemon = start_system_daemon(tmp, extra_env=extra_env)
    try:
        yield daemon
    finally:
        stop_and_audit(daemon)


def audit(daemon: Daemon) -> None:
    """Fail if any recorded password is in the daemon's log or any file of its state directory."""
    texts = {str(daemon.log_path): daemon.log_path.read_bytes()}
    for path in daemon.state_dir.iterdir():
        if path.is_file():
            texts[str(path)] = path.read_bytes()
    for where, data in texts.items():
        leaked = [p for p in PASSWORDS if p.encode() in data]
        assert not leaked, f"{len(leaked)} test password(s) found in {where}"


def stop_and_audit(daemon: Daemon) -> None:
    """Stop the daemon (it must exit 0), then audit its files."""
    try:
        daemon.stop_and_check()
    finally:
        audit(daemon)


def login(client: Client, name: str, password: str | None = None, *, patience: float = 20.0) -> LoginReply:
    """Log in, waiting out ``login_throttled`` from earlier failures of this name or address.

    A throttled attempt never reaches PAM and counts as no failure, so trying again is harmless.
    """

    def attempt() -> LoginReply | None:
        try:
            return client.login(name, password)
        except RemoteError as exc:
            if exc.code != ErrorCode.LOGIN_THROTTLED:
                raise
            return None

    return eventually(attempt, f"a login as {name} the host no longer throttles", timeout=patience, interval=0.25)


def error_of(call: Any, *args: Any) -> RemoteError:
    """Call and return the RemoteError it raised (failing if it succeeded)."""
    try:
        reply = call(*args)
    except RemoteError as exc:
        return exc
    raise AssertionError(f"expected an error reply, got {reply!r}")


def chown_tree(top: Path, user: User) -> None:
    """Give *top* and everything in it to *user*."""
    for path in [top, *top.rglob("*")]:
        os.chown(path, user.uid, user.gid, follow_symlinks=False)

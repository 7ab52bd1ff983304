"""ssd-ctl login, whoami, logout, copy-id and revoke-id as a script runs them, against a system-mode daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.ci import require_root
from support.daemon import Daemon
from users import User, new_password, system_daemon, users

from ssd.client.identity import client_keypair
from ssd.errors import ErrorCode

CTL = [sys.executable, "-m", "ssd.ctl.main"]


@pytest.fixture(scope="module")
def user() -> Iterator[User]:
    """A test user for the module."""
    require_root()
    with users(1) as made:
        yield made[0]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A system-mode daemon for this test."""
    require_root()
    with system_daemon(tmp_path) as made:
        yield made


class Ctl:
    """Runs ssd-ctl with one client directory (one keypair) against one daemon."""

    def __init__(self, daemon: Daemon, client_dir: Path) -> None:
        self.daemon = daemon
        self.env = {**os.environ, "SSD_CLIENT_DIR": str(client_dir)}

    def run(self, command: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """``ssd-ctl COMMAND HOST --trust ARGS`` (``COMMAND HOST WORD`` for a COMMAND ``revoke-id WORD``);
        stdin is /dev/null unless text is given."""
        words = command.split()
        argv = [*CTL, words[0], self.daemon.host, *words[1:], "--trust", *args]
        return subprocess.run(
            argv,
            env=self.env,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def json(self, command: str, *args: str, stdin: str | None = None, code: int = 0) -> dict[str, Any]:
        """Run with --json, check the exit code and return the document."""
        result = self.run(command, "--json", *args, stdin=stdin)
        assert result.returncode == code, (result.stdout, result.stderr)
        document: dict[str, Any] = json.loads(result.stdout)
        return document


def test_login_whoami_logout(daemon: Daemon, tmp_path: Path, user: User) -> None:
    """login --password-stdin binds the key; whoami shows the user; logout ends it (then exit 1)."""
    ctl = Ctl(daemon, tmp_path / "client")
    assert ctl.json("whoami", code=1)["error"] == ErrorCode.NOT_AUTHORIZED
    logged = ctl.json("login", "--user", user.name, "--password-stdin", stdin=user.password + "\n")
    assert (logged["user"], logged["method"]) == (user.name, "password")
    assert ctl.json("whoami")["user"] == user.name
    human = ctl.run("whoami")
    assert human.returncode == 0
    assert user.name in human.stdout
    assert "session until" in human.stdout
    assert ctl.json("logout")["ended"] is True
    after = ctl.run("whoami")
    assert after.returncode == 1
    assert "login" in after.stderr


def test_failures_and_their_exit_codes(daemon: Daemon, tmp_path: Path, user: User) -> None:
    """A wrong password is an error reply (1); an empty one or no terminal is a usage error (2)."""
    ctl = Ctl(daemon, tmp_path / "client")
    empty = ctl.run("login", "--user", user.name, "--password-stdin", stdin="\n")
    assert empty.returncode == 2
    assert "empty password" in empty.stderr
    no_tty = ctl.run("login", "--user", user.name)  # the key is not authorized, and no terminal to ask
    assert no_tty.returncode == 2
    assert "--password-stdin" in no_tty.stderr
    assert (
        ctl.json("login", "--user", "../etc", "--password-stdin", stdin="x\n", code=1)["error"] == ErrorCode.BAD_REQUEST
    )
    assert ctl.json("copy-id", code=1)["error"] == ErrorCode.NOT_AUTHORIZED
    assert ctl.json("whoami", code=1)["error"] == ErrorCode.NOT_AUTHORIZED
    wrong = new_password()  # last: a failure makes this name wait a moment before the next attempt
    result = ctl.run("login", "--json", "--user", user.name, "--password-stdin", stdin=wrong + "\n")
    assert result.returncode == 1
    assert json.loads(result.stdout)["error"] == ErrorCode.AUTH_FAILED
    assert wrong not in result.stdout + result.stderr


def test_copy_id_then_key_login(daemon: Daemon, tmp_path: Path, user: User) -> None:
    """copy-id after a login authorizes the key; later logins need no password, even with --key-only."""
    ctl = Ctl(daemon, tmp_path / "client")
    assert ctl.json("login", "--user", user.name, "--key-only", code=1)["error"] == ErrorCode.AUTH_FAILED
    ctl.json("login", "--user", user.name, "--password-stdin", stdin=user.password + "\n")
    added = ctl.json("copy-id")
    assert (added["user"], added["added"]) == (user.name, True)
    path = Path(added["file"])
    assert path == user.home / ".config" / "ssd" / "authorized_keys"
    assert (path.stat().st_uid, path.stat().st_mode & 0o777) == (user.uid, 0o600)
    public = client_keypair(tmp_path / "client").public.decode()
    assert [line.split()[0] for line in path.read_text().splitlines()[1:]] == [public]
    again = ctl.run("copy-id")
    assert again.returncode == 0
    assert "already authorized" in again.stdout
    assert ctl.json("logout")["ended"] is True
    by_key = ctl.json("login", "--user", user.name, "--key-only")
    assert (by_key["user"], by_key["method"]) == (user.name, "key")
    ctl.json("logout")
    plain = ctl.json("login", "--user", user.name)  # no terminal needed: the key is tried first
    assert plain["method"] == "key"
    assert ctl.json("whoami")["user"] == user.name


def test_logout_says_the_key_is_authorized_and_revoke_id_removes_it(daemon: Daemon, tmp_path: Path, user: User) -> None:
    """With the key authorized, logout says a running Jupyter logs in again by key and names revoke-id;
    revoke-id removes this client's key (written as the user, other keys kept), then the key alone no
    longer logs in and logout says nothing more. revoke-id KEY and --all remove other keys."""
    ctl, other = Ctl(daemon, tmp_path / "client"), Ctl(daemon, tmp_path / "other")
    for each in (ctl, other):
        each.json("login", "--user", user.name, "--password-stdin", stdin=user.password + "\n")
        each.json("copy-id")
    said = ctl.run("logout")
    assert said.returncode == 0
    assert said.stdout.splitlines()[-2:] == ["Revoke it with:", f"    ssd-ctl revoke-id {daemon.host}"]
    assert "logs in again by key" in said.stdout
    assert ctl.json("login", "--user", user.name, "--key-only")["method"] == "key"
    assert ctl.json("logout") == {"ended": True, "key_authorized": True}

    ctl.json("login", "--user", user.name, "--key-only")
    revoked = ctl.json("revoke-id")
    assert (revoked["removed"], revoked["authorized"], revoked["admin_file"]) == (1, False, None)
    path = Path(revoked["file"])
    assert (path.stat().st_uid, path.stat().st_mode & 0o777) == (user.uid, 0o600)
    listed = {line.split()[0] for line in path.read_text().splitlines()[1:]}
    assert client_keypair(tmp_path / "other").public.decode() in listed
    assert client_keypair(tmp_path / "client").public.decode() not in listed
    assert ctl.json("revoke-id")["removed"] == 0
    said = ctl.run("logout")
    assert (said.returncode, said.stdout) == (0, f"logged out of {daemon.host}\n")
    assert ctl.json("login", "--user", user.name, "--key-only", code=1)["error"] == ErrorCode.AUTH_FAILED

    ctl.json("login", "--user", user.name, "--password-stdin", stdin=user.password + "\n")
    assert ctl.json("revoke-id not-a-key", code=1)["error"] == ErrorCode.BAD_REQUEST
    assert ctl.json(f"revoke-id {client_keypair(tmp_path / 'other').public.decode()}")["removed"] == 1
    assert other.json("login", "--user", user.name, "--key-only", code=1)["error"] == ErrorCode.AUTH_FAILED
    ctl.json("copy-id")
    other.json("login", "--user", user.name, "--password-stdin", stdin=user.password + "\n")
    other.json("copy-id")
    assert ctl.json("revoke-id", "--all")["removed"] == len(listed) + 1  # this key and every other one
    assert path.read_text().splitlines()[0].startswith("# ssd authorized client keys")
    assert ctl.json("logout")["key_authorized"] is False

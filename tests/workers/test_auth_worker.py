"""The auth worker's key files (StrictModes reading, appending as the user), copy-id, and user mode."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import zmq
from support.ci import require_root
from support.daemon import Daemon, new_client
from users import User, chown_tree, error_of, login, stop_and_audit, system_daemon, users

from ssd.errors import ErrorCode
from ssd.users import lookup
from ssd.workers.keyfile import append_key, authorized, read_keys
from ssd.workers.privileges import as_user

KEY1, KEY2 = zmq.curve_keypair()[0], zmq.curve_keypair()[0]
ME = os.geteuid()


def key_file(home: Path, text: bytes, mode: int = 0o600) -> Path:
    """Write *text* to HOME/.config/ssd/authorized_keys (folders 0700)."""
    path = home / ".config" / "ssd" / "authorized_keys"
    path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    path.write_bytes(text)
    path.chmod(mode)
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home directory (0755) owned by the test's user."""
    path = tmp_path / "home"
    path.mkdir(mode=0o755)
    return path


def test_safe_file_yields_its_keys(home: Path) -> None:
    """Keys (with or without a comment) count; comments, blanks and junk lines do not."""
    path = key_file(home, b"# header\n\n" + KEY1 + b" laptop\n" + KEY2 + b"\nnot-a-key\n" + KEY1[:-1] + b"\n")
    assert read_keys(path, ME, home) == {KEY1, KEY2}
    assert authorized(KEY2, [(home / "missing", ME, home), (path, ME, home)])
    assert not authorized(zmq.curve_keypair()[0], [(path, ME, home)])


def test_missing_file_is_silent(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    """No file: no keys and nothing logged."""
    assert read_keys(home / ".config" / "ssd" / "authorized_keys", ME, home) == set()
    assert not caplog.records


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        (lambda p, h: p.chmod(0o664), "writable by group or others (mode 0664)"),
        (lambda p, h: p.chmod(0o602), "writable by group or others"),
        (lambda p, h: p.parent.chmod(0o775), "writable by group or others (mode 0775)"),
        (lambda p, h: (h / ".config").chmod(0o777), "writable by group or others"),
        (lambda p, h: h.chmod(0o770), "writable by group or others"),
    ],
    ids=["file-664", "file-602", "dir-775", "config-777", "home-770"],
)
def test_loose_permissions_are_ignored_with_a_reason(
    home: Path, caplog: pytest.LogCaptureFixture, breakage: Callable[[Path, Path], object], reason: str
) -> None:
    """A group/other-writable file or folder up to the home makes the whole file count for nothing."""
    path = key_file(home, KEY1 + b"\n")
    breakage(path, home)
    with caplog.at_level(logging.WARNING, logger="ssd.workers.keyfile"):
        assert read_keys(path, ME, home) == set()
    assert f"ignoring authorized keys {path}" in caplog.text
    assert reason in caplog.text


def test_owner_symlink_and_fifo_are_ignored(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A file owned by someone else (not root), a symbolic link or a FIFO is never read."""
    require_root()
    path = key_file(home, KEY1 + b"\n")
    os.chown(path, 4242, 4242)
    with caplog.at_level(logging.WARNING, logger="ssd.workers.keyfile"):
        assert read_keys(path, 4243, home) == set()
        assert read_keys(path, 4242, home) == {KEY1}  # the user's own file in folders of root's: fine
    assert "is owned by uid 4242" in caplog.text
    os.chown(path, 0, 0)
    assert read_keys(path, 4243, home) == {KEY1}  # root-owned, as sshd accepts
    real = path.with_name("real")
    path.rename(real)
    path.symlink_to(real)
    assert read_keys(path, ME, home) == set()
    assert "is a symbolic link" in caplog.text
    path.unlink()
    os.mkfifo(path, 0o600)
    assert read_keys(path, ME, home) == set()
    assert "not a regular file" in caplog.text


def test_unexaminable_path_is_ignored_not_an_error(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A path that cannot even be examined (here: a file where a folder should be) is ignored and logged."""
    (home / ".config").write_text("not a folder")
    path = home / ".config" / "ssd" / "authorized_keys"
    with caplog.at_level(logging.WARNING, logger="ssd.workers.keyfile"):
        assert read_keys(path, ME, home) == set()
    assert "cannot be checked (Not a directory)" in caplog.text


def test_append_key_creates_and_deduplicates(home: Path) -> None:
    """append_key makes 0700 folders and a 0600 file with a header, and adds a key once."""
    path = home / ".config" / "ssd" / "authorized_keys"
    assert append_key(path, KEY1, "laptop") is True
    assert append_key(path, KEY1, "again") is False
    assert append_key(path, KEY2, "") is True
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    lines = path.read_bytes().splitlines()
    assert lines[0].startswith(b"#")
    assert lines[1:] == [KEY1 + b" laptop", KEY2]
    assert read_keys(path, ME, home) == {KEY1, KEY2}


def test_append_key_refuses_bad_input(home: Path) -> None:
    """Not a key, or a comment with a line break, is refused; a missing final newline is mended."""
    path = key_file(home, b"# mine\n" + KEY1)  # no newline at the end
    with pytest.raises(ValueError, match="public key"):
        append_key(path, b"~" * 40, "")
    with pytest.raises(ValueError, match="one line"):
        append_key(path, KEY2, "a\n" + KEY1.decode())
    assert append_key(path, KEY2, "ok")
    assert path.read_bytes().splitlines() == [b"# mine", KEY1, KEY2 + b" ok"]


@pytest.fixture(scope="module")
def module_user() -> Iterator[User]:
    """A test user for the module."""
    require_root()
    with users(1) as made:
        yield made[0]


@pytest.fixture
def user(module_user: User) -> User:
    """The module's user, without the key files an earlier test left in their home."""
    shutil.rmtree(module_user.home / ".config", ignore_errors=True)
    return module_user


def test_as_user_drops_root_and_its_groups(user: User) -> None:
    """as_user runs a child with the user's uid, gid and groups only, in their home."""
    account = lookup(user.name)
    assert account is not None
    out = subprocess.run(["sh", "-c", "id -u; id -g; id -G; pwd"], capture_output=True, text=True, **as_user(account))
    uid, gid, groups, cwd = out.stdout.split("\n")[:4]
    assert (int(uid), int(gid), cwd) == (user.uid, user.gid, str(user.home))
    assert "0" not in groups.split()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A system-mode daemon for this test."""
    require_root()
    with system_daemon(tmp_path) as made:
        yield made


def test_own_key_file_needs_strict_permissions(daemon: Daemon, tmp_path: Path, user: User) -> None:
    """A loose ~/.config/ssd/authorized_keys is ignored (and the log says why); a strict one logs in."""
    with new_client(daemon, tmp_path / "c") as client:
        path = key_file(user.home, client.aclient.identity.public + b"\n", mode=0o664)
        chown_tree(user.home / ".config", user)
        assert error_of(login, client, user.name).code == ErrorCode.AUTH_FAILED
        assert f"ignoring authorized keys {path}" in daemon.log()
        path.chmod(0o600)
        path.parent.chmod(0o775)
        assert error_of(login, client, user.name).code == ErrorCode.AUTH_FAILED
        assert f"{path.parent} is writable by group or others" in daemon.log()
        path.parent.chmod(0o700)
        reply = login(client, user.name)
        assert (reply.user, reply.method) == (user.name, "key")


def test_copy_id_writes_the_users_file(daemon: Daemon, tmp_path: Path, user: User) -> None:
    """After a password login, key_add writes the key as the user (0600); then the key alone logs in."""
    path = user.home / ".config" / "ssd" / "authorized_keys"
    with new_client(daemon, tmp_path / "c") as client:
        login(client, user.name, user.password)
        added = client.key_add("from the test")
        assert (added.added, added.file, added.user) == (True, str(path), user.name)
        assert client.key_add().added is False
        client.logout()
    info = path.stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (user.uid, user.gid, 0o600)
    assert (path.parent.stat().st_uid, path.parent.stat().st_mode & 0o777) == (user.uid, 0o700)
    with new_client(daemon, tmp_path / "c") as again:  # same keypair, new connection, no session
        assert error_of(again.whoami).code == "not_authorized"
        assert login(again, user.name).method == "key"
        assert again.whoami().user == user.name


def test_copy_id_never_follows_a_planted_link(daemon: Daemon, tmp_path: Path, user: User) -> None:
    """If the user's key file is a symlink to a file of root's, copy-id fails and writes nothing there."""
    target = tmp_path / "roots-file"
    target.write_text("root's\n")
    path = user.home / ".config" / "ssd" / "authorized_keys"
    path.parent.mkdir(parents=True)
    path.symlink_to(target)
    chown_tree(user.home / ".config", user)
    with new_client(daemon, tmp_path / "c") as client:
        login(client, user.name, user.password)
        assert error_of(client.key_add).code == ErrorCode.KEY_ADD_FAILED
    assert target.read_text() == "root's\n"


def test_revoke_id_never_follows_a_planted_link(daemon: Daemon, tmp_path: Path, user: User) -> None:
    """If the user's key file is a symlink to a file of root's holding the key, revoke-id fails and root's
    file keeps its lines (the helper runs as the user and opens without following links)."""
    target = tmp_path / "roots-file"
    path = user.home / ".config" / "ssd" / "authorized_keys"
    path.parent.mkdir(parents=True)
    path.symlink_to(target)
    chown_tree(user.home / ".config", user)
    with new_client(daemon, tmp_path / "c") as client:
        text = f"{client.aclient.identity.public.decode()} root's line\n"
        target.write_text(text)
        login(client, user.name, user.password)
        assert error_of(client.key_remove).code == ErrorCode.KEY_REMOVE_FAILED
        assert error_of(lambda: client.key_remove(all_keys=True)).code == ErrorCode.KEY_REMOVE_FAILED
    assert target.read_text() == text
    assert path.is_symlink()


@contextmanager
def user_mode_daemon(user: User, log_path: Path) -> Iterator[Daemon]:
    """``ssd run`` as *user* (not root), its directories in their home; stopped and audited afterwards."""
    top = user.home / "ssd-server"
    top.mkdir(mode=0o700)
    os.chown(top, user.uid, user.gid)
    env = {
        "HOME": str(user.home),
        "USER": user.name,
        "LOGNAME": user.name,
        "PATH": "/usr/bin:/bin",
        "SSD_CONFIG_DIR": str(top / "config"),
        "SSD_STATE_DIR": str(top / "state"),
    }
    argv = [sys.executable, "-m", "ssd", "--bind", "127.0.0.1", "--port", "0", "--no-announce", "--log-level", "debug"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, env=env, cwd=user.home, user=user.uid, group=user.gid, extra_groups=[user.gid], stdout=log, stderr=log
        )
    daemon = Daemon(process, top / "config", top / "state", log_path)
    try:
        daemon.wait_ready()
    except BaseException:
        process.kill()
        process.wait()
        raise
    try:
        yield daemon
    finally:
        stop_and_audit(daemon)


def test_user_mode_admits_only_its_own_user(tmp_path: Path) -> None:
    """A daemon run by a user lets that user in by password (unix_chkpwd); another user, even by key, not."""
    require_root()
    with users(2) as (owner, other), user_mode_daemon(owner, tmp_path / "daemon.log") as daemon:
        assert daemon.info["mode"] == "user"
        assert int(str(daemon.info["pid"])) == daemon.process.pid
        with new_client(daemon, tmp_path / "a") as client:
            assert login(client, owner.name, owner.password).user == owner.name
            assert client.whoami().user == owner.name
        with new_client(daemon, tmp_path / "b") as client:
            assert error_of(login, client, other.name, other.password).code == ErrorCode.AUTH_FAILED
            # A key file the daemon's user can read and would accept: only the policy stands in the way.
            path = key_file(other.home, client.aclient.identity.public + b"\n", mode=0o644)
            for folder in (path.parent, path.parent.parent):
                folder.chmod(0o755)
            chown_tree(other.home / ".config", other)
            assert error_of(login, client, other.name).code == ErrorCode.AUTH_FAILED
            assert f"user mode: only {owner.name} may log in, not {other.name}" in daemon.log()
            path.parent.chmod(0o700)  # now unreadable to the daemon: ignored, not an internal error
            assert error_of(login, client, other.name).code == ErrorCode.AUTH_FAILED
            assert f"{path} cannot be checked (Permission denied)" in daemon.log()
            assert error_of(client.whoami).code == ErrorCode.NOT_AUTHORIZED

"""Password logins through real PAM against a system-mode daemon, with real users.

Every refusal must look the same to the client; the daemon's log says why.
"""

from __future__ import annotations

import asyncio
import grp
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec
import pytest
from support.ci import require_root
from support.daemon import Daemon, new_client
from users import User, audit, error_of, login, new_password, system_daemon, users

from ssd.client import AsyncClient, KnownHosts
from ssd.client.identity import client_keypair
from ssd.errors import ErrorCode, RemoteError


@pytest.fixture(scope="module")
def pair() -> Iterator[list[User]]:
    """Two ordinary test users for the module."""
    require_root()
    with users(2) as made:
        yield made


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A system-mode daemon (debug logging) for this test."""
    require_root()
    with system_daemon(tmp_path) as made:
        yield made


def test_correct_password_binds_the_key(daemon: Daemon, tmp_path: Path, pair: list[User]) -> None:
    """The right password binds this key to the user for the default half day; whoami says so."""
    user = pair[0]
    with new_client(daemon, tmp_path / "c") as client:
        reply = login(client, user.name, user.password)
        assert (reply.user, reply.uid, reply.method) == (user.name, user.uid, "password")
        me = client.whoami()
        assert me.user == user.name
        assert me.expires - me.since == pytest.approx(43200)
        assert me.expires == pytest.approx(reply.expires)


def refusal(daemon: Daemon, directory: Path, name: str, password: str | None) -> tuple[str, str]:
    """Try one login with a fresh key; return (ename, evalue) and check the key stayed unbound."""
    with new_client(daemon, directory) as client:
        refused = error_of(login, client, name, password)  # waits out the per-address in-flight cap
        assert error_of(client.whoami).code == ErrorCode.NOT_AUTHORIZED
    return refused.code, refused.message


def test_every_refusal_gives_the_same_answer(daemon: Daemon, tmp_path: Path, pair: list[User]) -> None:
    """Wrong password, unknown user, locked, expired, system account and root all get one answer."""
    with users(2) as (locked, expired), users(1, system=True) as (system,):
        subprocess.run(["usermod", "-L", locked.name], check=True)
        subprocess.run(["chage", "-E", "0", expired.name], check=True)
        root_dir = tmp_path / "root-client"
        daemon.authorize(client_keypair(root_dir).public, "root")
        cases: dict[str, tuple[Path, str, str | None]] = {
            "wrong password": (tmp_path / "w", pair[0].name, new_password()),
            "unknown user": (tmp_path / "u", f"ssdt_{secrets.token_hex(4)}", new_password()),
            "locked": (tmp_path / "l", locked.name, locked.password),
            "expired": (tmp_path / "e", expired.name, expired.password),
            "system account": (tmp_path / "s", system.name, system.password),
            "root by admin key": (root_dir, "root", None),
        }
        # In parallel: each PAM failure takes seconds, and they must not queue behind each other.
        with ThreadPoolExecutor(len(cases)) as pool:
            futures = {case: pool.submit(refusal, daemon, *args) for case, args in cases.items()}
            answers = {case: future.result(timeout=30) for case, future in futures.items()}
    assert len(set(answers.values())) == 1, answers
    code, message = answers["wrong password"]
    assert code == ErrorCode.AUTH_FAILED
    for hint in (pair[0].name, "unknown", "locked", "expired", "root", "system"):
        assert hint not in message
    log = daemon.log()
    assert "root may not log in" in log
    assert f"{system.name} is a system account" in log
    assert f"failed password login for {locked.name}" in log


def test_root_and_system_accounts_when_configured(tmp_path: Path) -> None:
    """auth.allow_root and a lower auth.min_uid let root (by key) and a system account log in."""
    require_root()
    with users(1, system=True) as (system,):
        env = {"SSD_AUTH_ALLOW_ROOT": "true", "SSD_AUTH_MIN_UID": str(system.uid)}
        with system_daemon(tmp_path, env) as daemon:
            with new_client(daemon, tmp_path / "root") as root:
                daemon.authorize(root.aclient.identity.public, "root")
                assert login(root, "root").method == "key"
                assert root.whoami().user == "root"
            with new_client(daemon, tmp_path / "sys") as client:
                assert login(client, system.name, system.password).user == system.name


Setting = Callable[[User, User], dict[str, str]]


def group_of(user: User) -> str:
    """The user's primary group name (useradd makes one per user)."""
    return grp.getgrgid(user.gid).gr_name


@pytest.mark.parametrize(
    "setting",
    [lambda a, b: {"SSD_AUTH_DENY_USERS": b.name}, lambda a, b: {"SSD_AUTH_ALLOW_GROUPS": group_of(a)}],
    ids=["deny_users", "allow_groups"],
)
def test_allow_and_deny_lists(tmp_path: Path, pair: list[User], setting: Setting) -> None:
    """Only the allowed (or not denied) user gets in, even with both passwords right."""
    allowed, refused = pair
    with system_daemon(tmp_path, setting(allowed, refused)) as daemon:
        with new_client(daemon, tmp_path / "a") as client:
            assert login(client, allowed.name, allowed.password).user == allowed.name
        assert refusal(daemon, tmp_path / "b", refused.name, refused.password)[0] == "auth_failed"
        assert f"login of {refused.name} refused" in daemon.log()


@pytest.mark.parametrize("name", ["../x", "-rf", "a b", "x" * 40, "é", "root\n", "a;b"])
def test_bad_user_names_are_bad_requests(daemon: Daemon, tmp_path: Path, name: str) -> None:
    """A malformed user name is refused as bad_request before PAM (and before the throttle)."""
    with new_client(daemon, tmp_path / "c") as client:
        refused = error_of(client.login, name, new_password())
        assert refused.code == ErrorCode.BAD_REQUEST
        assert "invalid user name" in refused.message
        assert error_of(client.login, name, new_password()).code == ErrorCode.BAD_REQUEST  # not login_throttled


def test_lookalike_name_is_normalized(daemon: Daemon, tmp_path: Path, pair: list[User]) -> None:
    """A full-width spelling of the name logs in as the plain ASCII user (NFKC), never as something else."""
    user = pair[1]
    wide = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in user.name)
    assert wide != user.name
    with new_client(daemon, tmp_path / "c") as client:
        assert login(client, wide, user.password).user == user.name
        assert client.whoami().user == user.name


async def attempt(daemon: Daemon, directory: Path, name: str, password: str) -> dict[str, object]:
    """One login from its own client key; the reply, or the error reply's details."""
    client = AsyncClient(
        daemon.host, trust=True, identity=client_keypair(directory), known_hosts=KnownHosts(directory / "kh")
    )
    try:
        await client.connect()
        return msgspec.to_builtins(await client.login(name, password))  # type: ignore[no-any-return]
    except RemoteError as exc:
        return exc.details
    finally:
        await client.close()


async def attack(daemon: Daemon, tmp: Path, victim: str, user: User) -> tuple[list[dict[str, object]], float]:
    """20 concurrent wrong passwords for *victim*, then *user*'s valid login; its duration."""
    attackers = [asyncio.create_task(attempt(daemon, tmp / f"attacker{n}", victim, new_password())) for n in range(20)]
    # The broker has the attack once it answered one attacker (throttled at once, or failed in PAM).
    answered, _ = await asyncio.wait(attackers, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    assert answered, "no attacker was answered within 30 s"
    started = time.monotonic()
    valid = await attempt(daemon, tmp / "valid", user.name, user.password)
    took = time.monotonic() - started
    assert valid.get("status") == "ok", valid
    return list(await asyncio.gather(*attackers)), took


def test_failing_logins_do_not_delay_a_valid_one(daemon: Daemon, tmp_path: Path, pair: list[User]) -> None:
    """A valid login completes promptly during an attack; the attacker is told retry_after."""
    victim, user = pair
    replies, took = asyncio.run(attack(daemon, tmp_path, victim.name, user))
    assert took < 10, f"a valid login took {took:.1f}s during the attack"
    assert {r["ename"] for r in replies} <= {"auth_failed", "login_throttled"}
    throttled = [r for r in replies if r["ename"] == ErrorCode.LOGIN_THROTTLED]
    assert throttled
    assert all(isinstance(r["retry_after"], float | int) and r["retry_after"] > 0 for r in throttled)


def test_key_probes_do_not_lock_out_the_address(daemon: Daemon, tmp_path: Path, pair: list[User]) -> None:
    """Key logins that fail (ssd-ctl login tries the key first) never throttle password logins from there."""
    with new_client(daemon, tmp_path / "c") as client:
        for n in range(16):
            assert error_of(client.login, f"ssdt_probe{n}").code == ErrorCode.AUTH_FAILED
        user = pair[0]
        assert client.login(user.name, user.password).user == user.name


def test_no_password_in_logs_or_state(daemon: Daemon, tmp_path: Path, pair: list[User]) -> None:
    """After right and wrong passwords the debug log and the state store hold none of them."""
    user = pair[1]
    with new_client(daemon, tmp_path / "c") as client:
        login(client, user.name, user.password)
    with new_client(daemon, tmp_path / "d") as other:
        assert error_of(other.login, pair[0].name, new_password()).code == ErrorCode.AUTH_FAILED
    daemon.stop_and_check()
    audit(daemon)
    log = daemon.log()
    assert f"{user.name} logged in with a password" in log  # the log does record logins...
    assert f"failed password login for {pair[0].name}" in log
    assert "DEBUG" in log  # ...at the most talkative level

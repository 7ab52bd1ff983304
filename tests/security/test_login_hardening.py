"""Login hardening against a real system-mode daemon with real users and real PAM (issue 13, findings 6, 7, 9).

- A disabled account (locked, expired, no login shell) cannot log in by key, and a live
  session of an account disabled later is ended at the next account check.
- Wrong passwords from one address never lock the user out by key or from another address,
  and one address cannot occupy the whole auth pool.
- An empty password is refused before PAM unless configured.

Distinct client addresses are loopback source addresses (127.0.0.2, ...), bound by
libzmq's ``tcp://SOURCE:0;DEST:PORT`` endpoint: real TCP connections the broker sees
coming from different peers.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from support.ci import require_root
from support.daemon import Daemon
from support.eventually import eventually
from users import User, error_of, login, new_password, system_daemon, users

from ssd.client import AsyncClient, Client, KnownHosts
from ssd.client.hostspec import HostSpec
from ssd.client.identity import client_keypair
from ssd.errors import ErrorCode, RemoteError

ATTACKER, ELSEWHERE = "127.0.0.2", "127.0.0.3"


@dataclass(frozen=True)
class FromSource(HostSpec):
    """A host reached from a chosen local source address (the test's stand-in for another machine)."""

    source: str = "127.0.0.1"

    def endpoint(self, port: int | None = None) -> str:
        """``tcp://SOURCE:0;HOST:PORT``: libzmq binds the connection's local end to SOURCE."""
        return f"tcp://{self.source}:0;" + super().endpoint(port).removeprefix("tcp://")


def client_at(daemon: Daemon, directory: Path, source: str = "127.0.0.1") -> Client:
    """A Client (connected by ``with``) with its own keypair in *directory*, connecting from *source*."""
    return Client(
        FromSource("127.0.0.1", daemon.port, source=source),
        trust=True,
        identity=client_keypair(directory),
        known_hosts=KnownHosts(directory / "known_hosts"),
    )


def run(*argv: str) -> None:
    """Run an account tool (usermod, chage, passwd)."""
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


@pytest.fixture
def alice() -> Iterator[User]:
    """A fresh user for one test (tests lock and expire it)."""
    require_root()
    with users(1) as (made,):
        yield made


DISABLE = [
    (("usermod", "-L"), ("usermod", "-U"), "locked"),
    (("chage", "-E", "0"), ("chage", "-E", "-1"), "expired on 1970-01-01"),
    (("usermod", "-e", "1"), ("usermod", "-e", ""), "expired on 1970-01-02"),
    (("usermod", "-s", "/usr/sbin/nologin"), ("usermod", "-s", "/bin/sh"), "/usr/sbin/nologin is not listed"),
]


@pytest.mark.root
def test_disabled_account_cannot_log_in_by_key(tmp_path: Path, alice: User) -> None:
    """Locked, expired and nologin accounts are refused by key, saying why; enabled again, the key works."""
    with system_daemon(tmp_path) as daemon, client_at(daemon, tmp_path / "c") as client:
        daemon.authorize(client.aclient.identity.public, alice.name)
        assert client.login(alice.name).method == "key"
        client.logout()
        for disable, enable, why in DISABLE:
            run(*disable, alice.name)
            refused = error_of(client.login, alice.name)
            assert (refused.code, why in refused.message) == ("account_disabled", True), refused.message
            assert error_of(client.whoami).code == ErrorCode.NOT_AUTHORIZED
            run(*enable, alice.name)
            assert client.login(alice.name).method == "key"
            client.logout()
        assert f"login of {alice.name} refused: the account is locked" in daemon.log()


@pytest.mark.root
def test_nologin_shell_by_key_when_configured(tmp_path: Path, alice: User) -> None:
    """auth.require_listed_shell = false lets an account with a nologin shell in by key (a kernel-only account)."""
    run("usermod", "-s", "/usr/sbin/nologin", alice.name)
    settings = {"SSD_AUTH_REQUIRE_LISTED_SHELL": "false"}
    with system_daemon(tmp_path, settings) as daemon, client_at(daemon, tmp_path / "c") as client:
        daemon.authorize(client.aclient.identity.public, alice.name)
        assert client.login(alice.name).method == "key"


@pytest.mark.root
def test_live_sessions_end_when_the_account_is_locked(tmp_path: Path, alice: User) -> None:
    """With auth.account_recheck = 1 s, locking alice ends both her sessions; each key is told why."""
    with (
        system_daemon(tmp_path, {"SSD_AUTH_ACCOUNT_RECHECK": "1"}) as daemon,
        client_at(daemon, tmp_path / "k") as by_key,
        client_at(daemon, tmp_path / "p") as by_password,
    ):
        daemon.authorize(by_key.aclient.identity.public, alice.name)
        by_key.login(alice.name)
        login(by_password, alice.name, alice.password)
        assert by_key.whoami().user == by_password.whoami().user == alice.name
        run("usermod", "-L", alice.name)
        ended = eventually(lambda: error_of(by_key.whoami), "alice's key session to end")
        assert ended.code == ErrorCode.NOT_AUTHORIZED
        assert "your session was ended" in ended.message
        assert "locked" in ended.message
        assert "locked" in error_of(by_password.whoami).message
        assert "ended its 2 session(s)" in daemon.log()


@pytest.mark.root
def test_a_worker_start_rechecks_the_account(tmp_path: Path, alice: User) -> None:
    """Expired after her login, alice's first request for her own worker is refused and starts none."""
    with system_daemon(tmp_path) as daemon, client_at(daemon, tmp_path / "c") as client:
        daemon.authorize(client.aclient.identity.public, alice.name)
        client.login(alice.name)
        # Only the broker asks the auth pool this; a client's request of that type is unknown.
        assert error_of(client.request, "account_check_request").code == ErrorCode.UNKNOWN_MESSAGE_TYPE
        run("chage", "-E", "0", alice.name)
        refused = error_of(client.kernel_list)
        assert refused.code == ErrorCode.NOT_AUTHORIZED
        assert "expired" in refused.message
        assert "expired" in error_of(client.whoami).message
        assert f"started worker kernel:{alice.name}" not in daemon.log()
        run("chage", "-E", "-1", alice.name)
        client.login(alice.name)
        assert client.kernel_list() == []  # enabled again: the check passes and the worker starts
        assert f"started worker kernel:{alice.name}" in daemon.log()


@pytest.mark.root
def test_wrong_passwords_elsewhere_never_lock_the_user_out(tmp_path: Path, alice: User) -> None:
    """Wrong passwords for alice until her name is locked out at the attacker's address; her key (from that very
    address) and her password (from another) still log her in."""
    env = {"SSD_AUTH_FAILURE_DELAY": "0.05"}  # the attacker reaches the lockout sooner; it stays 300 s
    with system_daemon(tmp_path, env) as daemon:
        for n in range(5):
            with client_at(daemon, tmp_path / f"attacker{n}", ATTACKER) as attacker:
                assert error_of(login, attacker, alice.name, new_password()).code == ErrorCode.AUTH_FAILED
        with client_at(daemon, tmp_path / "attacker5", ATTACKER) as attacker:
            locked_out = error_of(attacker.login, alice.name, new_password())
            assert locked_out.code == ErrorCode.LOGIN_THROTTLED
            assert float(locked_out.details["retry_after"]) > 200
        with client_at(daemon, tmp_path / "key", ATTACKER) as by_key:
            daemon.authorize(by_key.aclient.identity.public, alice.name)
            assert by_key.login(alice.name).method == "key"
        with client_at(daemon, tmp_path / "elsewhere", ELSEWHERE) as elsewhere:
            assert elsewhere.login(alice.name, alice.password).method == "password"


async def attempt(daemon: Daemon, directory: Path, source: str, name: str, password: str) -> dict[str, object]:
    """One password login from its own key and *source*; the reply, or the error reply."""
    client = AsyncClient(
        FromSource("127.0.0.1", daemon.port, source=source),
        trust=True,
        identity=client_keypair(directory),
        known_hosts=KnownHosts(directory / "known_hosts"),
    )
    try:
        await client.connect()
        return msgspec.to_builtins(await client.login(name, password))  # type: ignore[no-any-return]
    except RemoteError as exc:
        return exc.details
    finally:
        await client.close()


async def flood_then_login(daemon: Daemon, tmp: Path, bob: User) -> tuple[list[dict[str, object]], dict[str, object]]:
    """8 wrong passwords at once from one address; once the broker turned some away, bob's login from another."""
    names = [f"ssdt_nobody{n}" for n in range(8)]
    flood = [
        asyncio.create_task(attempt(daemon, tmp / f"flood{n}", ATTACKER, name, new_password()))
        for n, name in enumerate(names)
    ]
    turned_away: set[asyncio.Task[dict[str, object]]] = set()
    pending = set(flood)
    while len(turned_away) < 4:  # then at least 4 are in PAM: a pool's worth on the old main
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED, timeout=30)
        assert done, "the flood got no answers"
        turned_away |= {task for task in done if task.result().get("ename") == ErrorCode.LOGIN_THROTTLED}
    valid = await attempt(daemon, tmp / "bob", ELSEWHERE, bob.name, bob.password)
    return list(await asyncio.gather(*flood)), valid


@pytest.mark.root
def test_one_address_cannot_occupy_the_auth_pool(tmp_path: Path, alice: User) -> None:
    """While one address floods wrong passwords, another user's login from elsewhere gets a worker at once.

    A request that finds no free auth worker waits at most service_wait (0.5 s here): far less than the
    2.25 s or more that each failed PAM attempt holds its worker.
    """
    with system_daemon(tmp_path, {"SSD_WORKERS_SERVICE_WAIT": "0.5"}) as daemon:
        eventually(lambda: daemon.log().count("ready for service auth") == 4, "the auth pool of 4 to register")
        flood, valid = asyncio.run(flood_then_login(daemon, tmp_path, alice))
    assert valid.get("status") == "ok", valid
    answers = [reply.get("ename") for reply in flood]
    assert set(answers) == {"auth_failed", "login_throttled"}
    assert answers.count("auth_failed") == 3  # pool_size 4, minus one kept for other addresses


@pytest.mark.root
def test_empty_password_is_refused_before_pam(tmp_path: Path, alice: User) -> None:
    """An account without a password (passwd -d) cannot log in with ""; the answer is the same for any name."""
    run("passwd", "-d", alice.name)
    for name in ("strict", "permissive"):
        (tmp_path / name).mkdir()
    with system_daemon(tmp_path / "strict") as daemon:
        with client_at(daemon, tmp_path / "a") as client, client_at(daemon, tmp_path / "b") as other:
            refused = error_of(client.login, alice.name, "")
            assert refused.code == ErrorCode.AUTH_FAILED
            assert "empty passwords are refused" in refused.message
            unknown = error_of(other.login, "ssdt_nosuchuser", "")
            assert (unknown.code, unknown.message) == (refused.code, refused.message)
            assert error_of(client.whoami).code == ErrorCode.NOT_AUTHORIZED
        assert f"password login for {alice.name}" not in daemon.log()  # never reached a worker
    permissive = {"SSD_AUTH_PERMIT_EMPTY_PASSWORDS": "true"}
    with system_daemon(tmp_path / "permissive", permissive) as daemon, client_at(daemon, tmp_path / "a") as client:
        assert client.login(alice.name, "").user == alice.name  # pam_unix nullok (Debian's default)

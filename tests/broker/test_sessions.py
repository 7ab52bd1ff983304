"""Sessions: a client key bound to a user, kept in the state store, never found by routing id."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from support.ci import require_root
from support.clock import ManualClock
from support.daemon import Daemon, new_client
from support.eventually import eventually
from users import User, error_of, login, start_system_daemon, stop_and_audit, system_daemon, users

from ssd.broker.sessions import SessionStore
from ssd.errors import ErrorCode
from ssd.protocol import Wire
from ssd.state import open_state


@pytest.fixture(scope="module")
def alice() -> Iterator[User]:
    """One test user for the module."""
    require_root()
    with users(1) as made:
        yield made[0]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A system-mode daemon for this test (shadows conftest's user-mode one)."""
    require_root()
    with system_daemon(tmp_path) as made:
        yield made


def test_store_binds_ends_and_counts(tmp_path: Path) -> None:
    """bind() makes a session for the key, end() removes it, other keys see nothing."""
    store = SessionStore(open_state(tmp_path))
    session = store.bind("KEY1", "alice", 60)
    assert session.expires == pytest.approx(session.created + 60)
    assert store.user_of("KEY1") == "alice"
    assert store.user_of("KEY2") is None
    assert len(store) == 1
    assert store.end("KEY1") is True
    assert store.end("KEY1") is False
    assert store.get("KEY1") is None
    assert (tmp_path / "state.db").stat().st_mode & 0o777 == 0o600


def test_store_rebind_replaces(tmp_path: Path) -> None:
    """Binding a key again replaces its user and deadline."""
    store = SessionStore(open_state(tmp_path))
    store.bind("KEY", "alice", 60)
    store.bind("KEY", "bob", 120)
    session = store.get("KEY")
    assert session is not None
    assert (session.user, len(store)) == ("bob", 1)
    assert session.expires - session.created == pytest.approx(120)


def test_store_expiry(tmp_path: Path) -> None:
    """An expired session is gone for get(), user_of() and the table."""
    db = open_state(tmp_path)
    clock = ManualClock()
    store = SessionStore(db, clock=clock)
    store.bind("KEY", "alice", 60)
    clock.now += 59.9
    assert store.user_of("KEY") == "alice"
    clock.now += 0.1
    assert store.user_of("KEY") is None
    assert len(store) == 0
    assert db.execute("SELECT COUNT(*) FROM sessions").fetchone() == (0,)


def test_store_ends_a_users_sessions_with_a_reason(tmp_path: Path) -> None:
    """end_user() ends every key of one user and keeps why for those keys; a new login clears it."""
    store = SessionStore(open_state(tmp_path))
    older = store.bind("K1", "alice", 60)
    store.bind("K2", "alice", 60)
    store.bind("K3", "bob", 60)
    assert store.logins() == {
        "alice": pytest.approx(older.created, abs=1.0),
        "bob": pytest.approx(older.created, abs=1.0),
    }
    assert store.end_user("alice", "the account is locked") == 2
    assert (store.user_of("K1"), store.user_of("K2"), store.user_of("K3")) == (None, None, "bob")
    assert store.end_reason("K1") == store.end_reason("K2") == "the account is locked"
    assert store.end_reason("K3") is None
    assert list(store.logins()) == ["bob"]
    store.bind("K1", "alice", 60)
    assert store.end_reason("K1") is None


def test_store_persists_across_reopen(tmp_path: Path) -> None:
    """A new store on the same database has the live sessions and drops the expired ones."""
    db = open_state(tmp_path)
    clock = ManualClock()
    store = SessionStore(db, clock=clock)
    kept = store.bind("LIVE", "alice", 3600)
    store.bind("DYING", "bob", 60)
    store.bind("ENDED", "carol", 3600)
    store.end("ENDED")
    db.close()
    clock.now += 60
    reopened_db = open_state(tmp_path)
    reopened = SessionStore(reopened_db, clock=clock)
    assert reopened.get("LIVE") == kept
    assert reopened.get("DYING") is None
    assert reopened.get("ENDED") is None
    assert reopened_db.execute("SELECT client_key FROM sessions").fetchall() == [("LIVE",)]


def test_session_survives_restart_and_logout_ends_it(tmp_path: Path, alice: User) -> None:
    """After a broker restart the same client key is still bound; logout ends it for good."""
    require_root()
    first = start_system_daemon(tmp_path)
    try:
        with new_client(first, tmp_path / "client") as client:
            bound = login(client, alice.name, alice.password)
    finally:
        stop_and_audit(first)
    second = start_system_daemon(tmp_path, init=False)
    try:
        with new_client(second, tmp_path / "client") as client:
            assert client.whoami().user == alice.name
            assert client.whoami().expires == pytest.approx(bound.expires)
            assert client.logout().ended is True
            assert error_of(client.whoami).code == "not_authorized"
    finally:
        stop_and_audit(second)
    third = start_system_daemon(tmp_path, init=False)
    try:
        with new_client(third, tmp_path / "client") as client:
            assert error_of(client.whoami).code == ErrorCode.NOT_AUTHORIZED
    finally:
        stop_and_audit(third)


def test_session_lifetime_is_enforced(tmp_path: Path, alice: User) -> None:
    """With auth.session_lifetime = 5 s the key is unbound a moment after that (5 s: a loaded machine may take
    a second between the login and the first whoami)."""
    require_root()
    with (
        system_daemon(tmp_path, {"SSD_AUTH_SESSION_LIFETIME": "5"}) as daemon,
        new_client(daemon, tmp_path / "c") as client,
    ):
        reply = login(client, alice.name, alice.password)
        assert reply.expires is not None
        assert reply.expires - time.time() <= 5.0
        assert client.whoami().user == alice.name
        eventually(lambda: time.time() > (reply.expires or 0), "the session's end")
        assert error_of(client.whoami).code == "not_authorized"


def test_another_key_cannot_use_the_session(daemon: Daemon, tmp_path: Path, alice: User) -> None:
    """A second client key is not bound by the first one's login, nor can it end that session."""
    with new_client(daemon, tmp_path / "a") as first, new_client(daemon, tmp_path / "b") as second:
        login(first, alice.name, alice.password)
        assert error_of(second.whoami).code == "not_authorized"
        assert error_of(second.logout).code == "not_authorized"
        assert first.whoami().user == alice.name


class Raw:
    """A DEALER with a chosen CURVE keypair and routing id, speaking the wire format directly."""

    def __init__(self, daemon: Daemon, keypair: tuple[bytes, bytes], routing_id: bytes) -> None:
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.setsockopt(zmq.ROUTING_ID, routing_id)
        self.sock.curve_publickey, self.sock.curve_secretkey = keypair
        self.sock.curve_serverkey = str(daemon.info["public_key"]).encode()
        self.sock.connect(f"tcp://{daemon.host}")
        self.wire = Wire()

    def call(self, msg_type: str, content: dict[str, Any] | None = None, timeout: float = 2.0) -> dict[str, Any] | None:
        """Send one request; return the reply content, or None if none came in *timeout* seconds."""
        self.sock.send_multipart(self.wire.serialize(msg_type, content or {})[1])
        if not self.sock.poll(int(timeout * 1000)):
            return None
        reply: dict[str, Any] = self.wire.parse(self.sock.recv_multipart(), has_idents=True).content
        return reply

    def close(self) -> None:
        """Close the socket and its context."""
        self.ctx.destroy(linger=0)


def call_as(daemon: Daemon, keypair: tuple[bytes, bytes], routing_id: bytes, msg_type: str) -> dict[str, Any]:
    """Connect with *keypair* and *routing_id* (retrying until the ROUTER has freed the id) and send."""
    for _ in range(10):
        raw = Raw(daemon, keypair, routing_id)
        try:
            reply = raw.call(msg_type, timeout=1.0)
        finally:
            raw.close()
        if reply is not None:
            return reply
    raise AssertionError(f"the broker never answered {msg_type} on routing id {routing_id!r}")


def test_forged_routing_id_changes_nothing(daemon: Daemon, alice: User) -> None:
    """A new key that takes a logged-in client's routing id gets no session and cannot end it."""
    routing_id, keypair = b"victim-routing-id", zmq.curve_keypair()
    victim = Raw(daemon, keypair, routing_id)
    try:
        reply = victim.call("login_request", {"username": alice.name, "password": alice.password}, timeout=15)
        assert reply is not None
        assert reply["status"] == "ok", reply
        # While the victim is connected: the duplicate is refused by the ROUTER or refused by the broker.
        intruder = Raw(daemon, zmq.curve_keypair(), routing_id)
        try:
            for msg_type in ("whoami_request", "logout_request"):
                answer = intruder.call(msg_type, timeout=1.0)
                assert answer is None or answer.get("ename") == ErrorCode.NOT_AUTHORIZED, answer
        finally:
            intruder.close()
        again = victim.call("whoami_request")
        assert again is not None
        assert again.get("user") == alice.name, again
    finally:
        victim.close()
    # The victim is gone and the routing id is free: the forger is still just an unbound key.
    forger = zmq.curve_keypair()
    for msg_type in ("whoami_request", "logout_request"):
        assert call_as(daemon, forger, routing_id, msg_type).get("ename") == ErrorCode.NOT_AUTHORIZED
    assert call_as(daemon, keypair, routing_id, "whoami_request").get("user") == alice.name

"""The client library against real daemons: host specs, trust on first use, errors, events, cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import stat
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from support.daemon import Daemon, logged_in_client, start_daemon

from ssd import keys
from ssd.client import AsyncClient, Client, Event, HostSpec, KnownHosts
from ssd.client.connection import until_subscribed
from ssd.errors import (
    ErrorCode,
    RemoteError,
    RequestTimeout,
    ServerKeyMismatch,
    ServerUntrusted,
    SSDError,
    TransportError,
    Unreachable,
)

CONNECT_TIMEOUT = 3.0


def mode(path: Path) -> int:
    """Permission bits of *path*."""
    return stat.S_IMODE(path.stat().st_mode)


def free_ports(count: int = 3) -> int:
    """A loopback port P such that P .. P+count-1 are all free right now."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count > 65535:
            continue
        try:
            for port in range(base, base + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free consecutive loopback ports")


def connect_once(host: str | HostSpec, **options: Any) -> None:
    """Open and close a Client, as ``with Client(...)`` does; connection errors propagate."""
    with Client(host, **options):
        pass


@pytest.fixture
def stopped(tmp_path: Path) -> Iterator[list[Daemon]]:
    """Daemons a test starts itself; each is stopped (exit 0 checked) or killed afterwards."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop_and_check()


# -- trust ----------------------------------------------------------------------------------


def test_first_contact_needs_trust_then_pins(daemon: Daemon, client_dir: Path) -> None:
    """Untrusted first contact names the fingerprint and writes nothing; trust=True pins the key 0600."""
    known = client_dir / "known_hosts"
    with pytest.raises(ServerUntrusted) as info:
        connect_once(daemon.host, connect_timeout=CONNECT_TIMEOUT)
    assert info.value.fingerprint == daemon.info["fingerprint"]
    assert str(daemon.info["fingerprint"]) in info.value.message
    assert f"ssd-ctl trust {daemon.host}" in info.value.message
    assert info.value.public_key == str(daemon.info["public_key"]).encode()
    assert not known.exists()
    with Client(daemon.host, trust=True, connect_timeout=CONNECT_TIMEOUT) as client:
        assert client.ping("pinned").data == "pinned"
        assert client.aclient.fingerprint == daemon.info["fingerprint"]
    assert mode(known) == 0o600
    entry = KnownHosts(known).get(daemon.host)
    assert entry is not None
    assert entry.fingerprint == daemon.info["fingerprint"]
    with Client(daemon.host, connect_timeout=CONNECT_TIMEOUT) as client:
        assert client.server_info().fingerprint == daemon.info["fingerprint"]


def test_changed_server_key_is_a_hard_error(tmp_path: Path, client_dir: Path, stopped: list[Daemon]) -> None:
    """Another key on a pinned host:port raises ServerKeyMismatch naming both fingerprints, quickly."""
    port = free_ports()
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    first = start_daemon(first_dir, args=["--port", str(port)])
    stopped.append(first)
    assert first.port == port
    with Client(first.host, trust=True, connect_timeout=CONNECT_TIMEOUT) as client:
        client.ping()
    assert first.stop() == 0, first.log()
    known = client_dir / "known_hosts"
    pinned = known.read_text()
    second = start_daemon(second_dir, args=["--port", str(port)])
    stopped.append(second)
    assert second.port == port
    assert second.info["fingerprint"] != first.info["fingerprint"]
    for trust in (False, True):  # trust=True is for first contact; it never replaces a pinned key
        began = time.monotonic()
        with pytest.raises(ServerKeyMismatch) as info:
            connect_once(second.host, trust=trust, connect_timeout=CONNECT_TIMEOUT)
        assert time.monotonic() - began < CONNECT_TIMEOUT, "the client waited for a handshake that had failed"
        message = info.value.message
        assert str(first.info["fingerprint"]) in message
        assert str(second.info["fingerprint"]) in message
        assert str(known) in message
        assert info.value.code == ErrorCode.SERVER_KEY_MISMATCH
    assert known.read_text() == pinned


def test_nothing_listening_is_unreachable(client_dir: Path) -> None:
    """A port without a server raises Unreachable within about the connect timeout."""
    spec = HostSpec("127.0.0.1", free_ports())
    began = time.monotonic()
    with pytest.raises(Unreachable) as info:
        connect_once(spec, trust=True, connect_timeout=1.0)
    assert time.monotonic() - began < 1.0 + 2.0
    assert str(spec) in info.value.message
    assert isinstance(info.value, TransportError)
    assert info.value.exit_code == 3
    assert not (client_dir / "known_hosts").exists()


def test_pinned_but_stopped_daemon_is_unreachable(tmp_path: Path, client_dir: Path, stopped: list[Daemon]) -> None:
    """A pinned host whose daemon is gone raises Unreachable, not a trust error."""
    daemon = start_daemon(tmp_path)
    stopped.append(daemon)
    with Client(daemon.host, trust=True, connect_timeout=CONNECT_TIMEOUT) as client:
        client.ping()
    assert daemon.stop() == 0, daemon.log()
    began = time.monotonic()
    with pytest.raises(Unreachable) as info:
        connect_once(daemon.host, connect_timeout=2.0)
    assert time.monotonic() - began < 2.0 + 1.5, "the client waited longer than its connect timeout"
    assert daemon.host in info.value.message
    assert "no answer within 2s" in info.value.message
    assert info.value.code == ErrorCode.UNREACHABLE


# -- requests -------------------------------------------------------------------------------


def test_request_timeout(daemon: Daemon, client_dir: Path) -> None:
    """A reply slower than the client's timeout raises RequestTimeout; the connection stays usable."""
    with contextlib.closing(logged_in_client(daemon, client_dir, timeout=0.5)) as client:
        with pytest.raises(RequestTimeout) as info:
            client.request("echo_request", {"data": "slow", "delay": 2})
        assert "echo_request" in info.value.message
        assert info.value.code == ErrorCode.TIMEOUT
        with pytest.raises(RequestTimeout):
            client.request("echo_request", {"delay": 2}, timeout=0.3)
        assert client.ping("still here").data == "still here"


@pytest.mark.parametrize(
    ("msg_type", "content", "code", "says"),
    [
        ("echo_request", {"data": 5}, "bad_request", "`data`"),
        ("echo_request", {"delay": 99}, "bad_request", "`delay`"),
        ("ping_request", {"nope": 1}, "bad_request", "nope"),
        ("frobnicate_request", {}, "unknown_message_type", "frobnicate_request"),
    ],
)
def test_error_reply_raises_remote_error(
    daemon: Daemon, client_dir: Path, msg_type: str, content: dict[str, object], code: str, says: str
) -> None:
    """An error reply becomes RemoteError with the server's stable code and readable message."""
    # Logged in, so that echo_request is refused for its content, not for the missing login.
    with contextlib.closing(logged_in_client(daemon, client_dir)) as client:
        with pytest.raises(RemoteError) as info:
            client.request(msg_type, content)
        assert isinstance(info.value, SSDError)
        assert info.value.code == code
        assert says in info.value.message
        assert "Traceback" not in info.value.message
        assert client.ping().status == "ok"


def check_host_status(event: Event) -> None:
    """A host_status event with the host's OS, CPU count and load averages."""
    assert event.topic == event.msg_type == "host_status"
    assert isinstance(event.content["os"], str)
    assert event.content["os"]
    assert isinstance(event.content["cpus"], int)
    assert event.content["cpus"] >= 1
    load = event.content["load"]
    assert isinstance(load, list)
    assert len(load) == 3
    assert all(isinstance(value, float | int) for value in load)


def test_async_client_events(daemon: Daemon, client_dir: Path) -> None:
    """AsyncClient.events() yields host_status events from the PUB socket."""

    async def first_status() -> Event:
        async with AsyncClient(daemon.host, trust=True) as client:
            assert (await client.ping("async")).data == "async"
            stream = client.events()
            try:
                while True:
                    event = await asyncio.wait_for(anext(stream), 10)
                    if event.msg_type == "host_status":
                        return event
            finally:
                await stream.aclose()

    check_host_status(asyncio.run(first_status()))


def test_a_subscription_is_confirmed_and_the_welcome_reaches_no_one_else(daemon: Daemon, client_dir: Path) -> None:
    """events(subscribed=) is set by the edge's SUBSCRIBED on this subscriber's hello topic (sent after its
    other subscriptions, so those are in effect); a subscriber to every topic never sees those welcomes."""

    async def scenario() -> list[Event]:
        async with AsyncClient(daemon.host, trust=True) as client:
            on_all = asyncio.Event()
            everything = client.events(subscribed=on_all)
            seen: list[Event] = []

            async def read_all() -> None:
                async for event in everything:
                    seen.append(event)

            reader = asyncio.ensure_future(read_all())
            try:
                assert await until_subscribed(on_all, timeout=30)
                last: Event | None = None
                for _ in range(3):  # each a new subscriber with its own hello topic
                    subscribed = asyncio.Event()
                    stream = client.events(("host_status",), subscribed=subscribed)
                    first = asyncio.ensure_future(anext(stream))
                    assert await until_subscribed(subscribed, timeout=30)
                    last = await asyncio.wait_for(first, 30)
                    check_host_status(last)
                    await stream.aclose()
                # One PUB queue per subscriber keeps order: once the reader of every topic has the last
                # host_status, it has had every welcome published before it.
                while last is None or last.content not in [event.content for event in seen]:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                await everything.aclose()
            return seen

    seen = asyncio.run(scenario())
    assert {event.msg_type for event in seen} == {"host_status"}, [event.topic for event in seen]


def test_sync_client_events(daemon: Daemon, client_dir: Path) -> None:
    """Client.events() yields host_status events, subscribed to that topic only."""
    with Client(daemon.host, trust=True) as client:
        stream = cast(Generator[Event, None, None], client.events(("host_status",)))
        try:
            first, second = next(stream), next(stream)
        finally:
            stream.close()
        check_host_status(first)
        check_host_status(second)
        assert second.content["time"] > first.content["time"]
        assert client.ping().status == "ok"


def test_async_and_sync_clients_side_by_side(daemon: Daemon, client_dir: Path) -> None:
    """Both clients work at once against one daemon and closing them leaves no thread or socket."""

    async def use_async() -> str:
        client = AsyncClient(daemon.host, trust=True)
        await client.connect()
        try:
            replies = await asyncio.gather(*(client.ping(str(i)) for i in range(5)))
            return "".join(reply.data for reply in replies)
        finally:
            await client.close()

    sync = Client(daemon.host, trust=True)
    sync.connect()
    try:
        assert asyncio.run(use_async()) == "01234"
        assert sync.server_info().name == daemon.info["name"]
    finally:
        sync.close()
    sync.close()  # closing twice is harmless
    with pytest.raises(Unreachable, match="not connected"):
        asyncio.run(sync.aclient.request("ping_request"))


def test_client_keypair_made_on_first_use(daemon: Daemon, client_dir: Path) -> None:
    """The client keypair is created in SSD_CLIENT_DIR (secret 0600, dir 0700) and reused."""
    assert not client_dir.exists()
    with Client(daemon.host, trust=True) as client:
        client.ping()
        public = client.aclient.identity.public
    secret = client_dir / "client.key_secret"
    assert mode(secret) == 0o600
    assert mode(client_dir) == 0o700
    assert (client_dir / "client.key").is_file()
    assert keys.load_keypair(client_dir / "client").public == public
    with Client(daemon.host) as again:
        assert again.aclient.identity.public == public
        again.ping()

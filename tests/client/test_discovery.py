"""Client discovery against real daemons announcing on loopback (zeroconf bound to 127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from netns import announcing_daemon

from ssd.client.discovery import SERVICE_TYPE, AsyncBrowser, Change, Trust, async_resolve_instance
from ssd.client.known_hosts import KnownHosts
from ssd.keys import create_keypair

LOOPBACK = ["127.0.0.1"]


def unique_name(stem: str) -> str:
    """An instance name no other test (or run) announces."""
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def test_daemon_is_discovered_with_port_fingerprint_and_txt(tmp_path: Path) -> None:
    """A browse finds the daemon once, with its control port, key fingerprint, ports and summary."""
    name = unique_name("disc")
    known = KnownHosts(tmp_path / "known_hosts")
    with announcing_daemon(tmp_path / "d", name) as daemon:

        async def look() -> None:
            async with AsyncBrowser(interfaces=LOOPBACK, known_hosts=known) as view:
                assert await view.wait_until(lambda hosts: f"{name}.{SERVICE_TYPE}" in hosts, 15), daemon.log()
                host = view.hosts[f"{name}.{SERVICE_TYPE}"]
                assert host.name == name
                assert host.port == daemon.port
                assert host.addresses == ("127.0.0.1",)
                assert host.local
                assert host.fingerprint == daemon.info["fingerprint"]
                assert host.txt["events"] == str(daemon.info["events_port"])
                assert host.txt["keyport"] == str(daemon.info["key_port"])
                assert host.txt["mode"] == "user"
                assert host.txt["proto"] == "1.0"
                assert host.txt["kernels"] == "0"
                assert int(host.txt["cpus"]) >= 1
                assert host.trust is Trust.NEW
                assert host.spec.key == f"{name}:{daemon.port}"
                assert host.spec.endpoint() == f"tcp://127.0.0.1:{daemon.port}"

        asyncio.run(look())
        # Pinned under its name: trusted. A different key pinned: mismatched, and it says which.
        known.pin(f"{name}:{daemon.port}", str(daemon.info["public_key"]).encode())
        found = asyncio.run(async_resolve_instance(name, 5, interfaces=LOOPBACK, known_hosts=known))
        assert found is not None
        assert found.trust is Trust.TRUSTED
        other = create_keypair(tmp_path / "other")
        known.pin(f"127.0.0.1:{daemon.port}", other.public)
        found = asyncio.run(async_resolve_instance(name, 5, interfaces=LOOPBACK, known_hosts=known))
        assert found is not None
        assert found.trust is Trust.MISMATCHED
        assert found.pinned == other.fingerprint
        daemon.stop_and_check()


def test_shutdown_is_seen_as_removal(tmp_path: Path) -> None:
    """Stopping the daemon sends goodbyes: a watching browser gets a removed change at once."""
    name = unique_name("bye")
    changes: list[Change] = []
    with announcing_daemon(tmp_path / "d", name) as daemon:

        async def watch() -> None:
            key = f"{name}.{SERVICE_TYPE}"
            async with AsyncBrowser(
                interfaces=LOOPBACK, known_hosts=KnownHosts(tmp_path / "kh"), on_change=changes.append
            ) as view:
                assert await view.wait_until(lambda hosts: key in hosts, 15), daemon.log()
                await asyncio.to_thread(daemon.stop_and_check)
                # Goodbye packets, not the 75-minute TTL, end the entry.
                assert await view.wait_until(lambda hosts: key not in hosts, 5)

        asyncio.run(watch())
    kinds = [c.kind for c in changes if c.host.name == name]
    assert kinds[0] == "added"
    assert kinds[-1] == "removed"


def test_two_daemons_with_one_name_both_appear(tmp_path: Path) -> None:
    """The second daemon with a taken name renames itself as mDNS says (NAME-2); both are listed."""
    name = unique_name("twin")
    with announcing_daemon(tmp_path / "one", name) as one:

        async def wait_for(names: set[str]) -> dict[str, int]:
            async with AsyncBrowser(interfaces=LOOPBACK, known_hosts=KnownHosts(tmp_path / "kh")) as view:
                ok = await view.wait_until(lambda hosts: names <= {h.name for h in hosts.values()}, 20)
                assert ok, f"saw {[h.name for h in view.hosts.values()]}"
                return {h.name: h.port for h in view.hosts.values() if h.name in names}

        assert asyncio.run(wait_for({name})) == {name: one.port}
        with announcing_daemon(tmp_path / "two", name) as two:
            ports = asyncio.run(wait_for({name, f"{name}-2"}))
            assert ports == {name: one.port, f"{name}-2": two.port}
            assert f"is taken on this network; announced as '{name}-2'" in two.log()
            two.stop_and_check()
        one.stop_and_check()

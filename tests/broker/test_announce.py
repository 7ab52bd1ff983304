"""The announcer: what it puts on which interface, what it refuses, and TXT updates on real zeroconf (loopback)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ssd.broker.announce import (
    MAX_INSTANCE_NAME,
    Announcer,
    check_instance_name,
    check_txt,
    plan_announcement,
    summary_txt,
)
from ssd.client.discovery import AsyncBrowser
from ssd.client.known_hosts import KnownHosts
from ssd.config import load_config
from ssd.errors import ConfigError

TABLE = {
    "lo": [("127.0.0.1", True), ("::1", True)],
    "eth0": [("192.168.1.20", True), ("fe80::1", True), ("2001:db8::20", True)],
    "eth1": [("10.0.0.5", False)],  # down
}


def test_loopback_bind_announces_on_loopback_only() -> None:
    """A daemon bound to 127.0.0.1 announces 127.0.0.1 on loopback and nothing on the LAN."""
    plan = plan_announcement([], "127.0.0.1", TABLE)
    assert plan.interfaces == ("127.0.0.1",)
    assert plan.addresses == ("127.0.0.1",)


def test_wildcard_bind_never_announces_loopback() -> None:
    """Bound to *, every up interface's routable address is announced, never loopback or link-local."""
    plan = plan_announcement([], "*", TABLE)
    assert plan.interfaces is None
    assert plan.addresses == ("192.168.1.20", "2001:db8::20")


def test_loopback_is_dropped_when_mixed_with_a_lan_address() -> None:
    """Configured loopback and LAN addresses together: the loopback one is not put on the LAN."""
    plan = plan_announcement(["127.0.0.1", "192.168.1.20"], "*", TABLE)
    assert plan.addresses == ("192.168.1.20",)
    assert plan_announcement(["10.0.0.5"], "*", TABLE).addresses == ()  # interface down: nothing yet


def test_oversized_values_are_refused_at_configuration() -> None:
    """A description too large for a TXT string, a bad interface, a too-long name: ConfigError before running."""
    with pytest.raises(ConfigError, match="200 bytes"):
        load_config(None, environ={"SSD_DISCOVERY_DESCRIPTION": "é" * 101})
    assert load_config(None, environ={"SSD_DISCOVERY_DESCRIPTION": "x" * 200}).discovery.description
    with pytest.raises(ConfigError, match="neither an IP address"):
        load_config(None, environ={"SSD_DISCOVERY_INTERFACES": "eth0"})
    with pytest.raises(ConfigError, match="instance name"):
        check_instance_name("n" * (MAX_INSTANCE_NAME + 1))
    with pytest.raises(ConfigError, match="under 255"):
        check_txt({"desc": "x" * 260})
    with pytest.raises(ConfigError, match="record"):
        check_txt({f"k{n}": "x" * 100 for n in range(5)})


def test_summary_is_small_and_complete() -> None:
    """The TXT summary has the protocol, key, ports, host facts and kernel count, each string short."""
    txt = summary_txt(fingerprint="SHA256:" + "A" * 43, events_port=9471, key_port=9472, mode="user", kernels=2)
    assert {"proto", "fp", "events", "keyport", "mode", "os", "arch", "cpus", "mem", "load", "kernels"} <= set(txt)
    assert txt["kernels"] == "2"
    assert check_txt(txt) == txt
    assert sum(len(k) + len(v) + 2 for k, v in txt.items()) < 300


def test_txt_change_reaches_a_browser(tmp_path: Path) -> None:
    """On loopback: a browser sees the announced TXT, then the kernel count change after a refresh."""
    kernels = [0]

    def summary() -> dict[str, str]:
        return summary_txt(fingerprint="SHA256:test", events_port=2, key_port=3, mode="user", kernels=kernels[0])

    async def scenario() -> None:
        announcer = Announcer(
            name="txt-probe",
            port=4242,
            summary=summary,
            interfaces=["127.0.0.1"],
            bind="127.0.0.1",
            refresh_interval=0.1,
            txt_min_interval=0,
        )
        task = asyncio.create_task(announcer.run())
        try:
            async with AsyncBrowser(interfaces=["127.0.0.1"], known_hosts=KnownHosts(tmp_path / "kh")) as view:

                def kernels_are(n: str) -> bool:
                    host = view.hosts.get("txt-probe._ssd._tcp.local.")
                    return host is not None and host.txt.get("kernels") == n

                assert await view.wait_until(lambda hosts: kernels_are("0"), 10)
                host = view.hosts["txt-probe._ssd._tcp.local."]
                assert host.port == 4242
                assert host.fingerprint == "SHA256:test"
                kernels[0] = 3
                announcer.refresh_soon()
                assert await view.wait_until(lambda hosts: kernels_are("3"), 10)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await announcer.stop()

    asyncio.run(scenario())

"""ssd-ctl discover and instance-name HOSTs: on loopback, across two network namespaces, and with avahi."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from netns import CTL, announcing_daemon, avahi_peer, ctl, namespace_pair
from support.ci import require_root

LOOPBACK_ONLY = {"SSD_DISCOVERY_INTERFACES": "127.0.0.1", "COLUMNS": "200"}  # wide: no wrapped cells


def unique_name(stem: str) -> str:
    """An instance name no other test (or run) announces."""
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def by_name(stdout: str) -> dict[str, dict[str, object]]:
    """The hosts of a ``discover --json`` document, by name."""
    return {h["name"]: h for h in json.loads(stdout)["hosts"]}


def test_discover_lists_the_local_daemon_and_info_reaches_it_by_name(tmp_path: Path) -> None:
    """discover shows the daemon (this machine), info NAME connects by the name alone and pins NAME:PORT."""
    name = unique_name("ctl")
    client_dir = tmp_path / "client"
    with announcing_daemon(tmp_path / "d", name) as daemon:
        found = ctl("discover", "--json", "--timeout", "1.5", client_dir=client_dir, env=LOOPBACK_ONLY)
        assert found.returncode == 0, found.stderr
        host = by_name(found.stdout)[name]
        assert host["port"] == daemon.port
        assert host["fingerprint"] == daemon.info["fingerprint"]
        assert host["trust"] == "new"
        assert host["local"] is True
        human = ctl("discover", "--timeout", "1.5", client_dir=client_dir, env=LOOPBACK_ONLY)
        assert name in human.stdout
        assert "this machine" in human.stdout
        info = ctl("info", name, "--trust", "--json", client_dir=client_dir, env=LOOPBACK_ONLY)
        assert info.returncode == 0, info.stderr
        assert json.loads(info.stdout)["fingerprint"] == daemon.info["fingerprint"]
        assert f"{name}:{daemon.port} " in (client_dir / "known_hosts").read_text()
        again = ctl("discover", "--json", "--timeout", "1.5", client_dir=client_dir, env=LOOPBACK_ONLY)
        assert by_name(again.stdout)[name]["trust"] == "trusted"
        daemon.stop_and_check()


def test_unknown_name_is_unreachable_not_a_crash(tmp_path: Path) -> None:
    """A bare name that neither DNS nor zeroconf knows fails as unreachable (exit 3)."""
    result = ctl("info", unique_name("nobody"), "--timeout", "1", client_dir=tmp_path / "c", env=LOOPBACK_ONLY)
    assert result.returncode == 3, result.stderr


def test_watch_streams_added_then_removed(tmp_path: Path) -> None:
    """discover --watch --json prints one line per change: the daemon appears, then leaves on shutdown."""
    name = unique_name("watch")
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    with announcing_daemon(tmp_path / "d", name) as daemon:
        watcher = subprocess.Popen(
            [*CTL, "discover", "--watch", "--json", "--timeout", "0.2"],
            env={**os.environ, "SSD_CLIENT_DIR": str(client_dir), **LOOPBACK_ONLY},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            events = []
            assert watcher.stdout is not None
            for line in watcher.stdout:
                event = json.loads(line)
                if event["host"]["name"] != name:
                    continue
                events.append(event["event"])
                if event["event"] == "added":
                    daemon.stop_and_check()
                if event["event"] == "removed":
                    break
            assert events[0] == "added"
            assert events[-1] == "removed"
        finally:
            watcher.send_signal(signal.SIGINT)
            try:
                _, stderr = watcher.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                watcher.kill()
                watcher.communicate()
                raise
        assert watcher.returncode == 130, stderr  # Ctrl-C: the usual exit, zeroconf closed on the way out


@pytest.mark.root
def test_two_hosts_in_namespaces_find_each_other_by_multicast(tmp_path: Path) -> None:
    """Daemon in host A (bound to *), ssd-ctl in host B: discover finds it, info NAME reaches it over CURVE."""
    require_root()
    name = unique_name("nsbox")
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    with namespace_pair("d") as (a, b), announcing_daemon(tmp_path / "d", name, bind="*", netns=a) as daemon:
        found = ctl("discover", "--json", "--timeout", "2", client_dir=client_dir, netns=b)
        assert found.returncode == 0, found.stderr
        host = by_name(found.stdout).get(name)
        assert host is not None, f"{found.stdout}\n{daemon.log()}"
        assert host["address"] == a.address  # not loopback: bound to *, loopback is never announced
        assert host["addresses"] == [a.address]
        assert host["port"] == daemon.port
        assert host["local"] is False
        info = ctl("info", name, "--trust", "--json", client_dir=client_dir, netns=b)
        assert info.returncode == 0, info.stderr
        assert json.loads(info.stdout)["fingerprint"] == daemon.info["fingerprint"]
        ping = ctl("ping", name, "--count", "1", "--json", client_dir=client_dir, netns=b)
        assert ping.returncode == 0, ping.stderr
        daemon.stop_and_check()


@pytest.mark.root
def test_avahi_sees_ssd_and_ssd_sees_avahi(tmp_path: Path) -> None:
    """A real peer: avahi-browse in host B resolves the daemon with its TXT; discover in A sees avahi-publish."""
    require_root()
    name = unique_name("avbox")
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    with (
        namespace_pair("v") as (a, b),
        avahi_peer(tmp_path / "avahi", b) as avahi,
        announcing_daemon(tmp_path / "d", name, bind="*", netns=a) as daemon,
    ):
        lines: list[str] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(line.startswith("=") for line in lines):
            browse = subprocess.run(
                avahi.command("avahi-browse", "-rpt", "_ssd._tcp"), capture_output=True, text=True, timeout=30
            )
            lines = [line for line in browse.stdout.splitlines() if f";{name};" in line]
        resolved = [line.split(";") for line in lines if line.startswith("=")]
        assert resolved, f"avahi-browse saw {lines}\n{daemon.log()}"
        fields = resolved[0]
        assert fields[7] == a.address
        assert fields[8] == str(daemon.port)
        assert f'"fp={daemon.info["fingerprint"]}"' in fields[9]
        assert '"kernels=0"' in fields[9]
        publisher = subprocess.Popen(
            avahi.command("avahi-publish", "-s", "avahi peer", "_ssd._tcp", "9999", "fp=SHA256:none", "kernels=7"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            found: dict[str, dict[str, object]] = {}
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and "avahi peer" not in found:
                result = ctl("discover", "--json", "--timeout", "1", client_dir=client_dir, netns=a)
                assert result.returncode == 0, result.stderr
                found = by_name(result.stdout)
            peer = found.get("avahi peer")
            assert peer is not None, found
            assert peer["address"] == b.address
            assert peer["port"] == 9999
            assert peer["txt"] == {"fp": "SHA256:none", "kernels": "7"}
        finally:
            publisher.terminate()
            publisher.wait(5)
        daemon.stop_and_check()

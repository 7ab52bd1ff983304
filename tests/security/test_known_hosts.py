"""Finding 10: a discovered instance's port comes from unauthenticated mDNS, so it cannot buy a new first use.

Real daemons announce on loopback and ssd-ctl finds them by instance name. A second daemon with
another key announcing a pinned name on another port (the spoofer) meets the key-changed error
(exit 4) even with --trust; the same key on a new port is the same server; two daemons on one
address (two users' user-mode daemons) stay two servers.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from netns import announcing_daemon, ctl
from support.daemon import start_daemon

LOOPBACK_ONLY = {"SSD_DISCOVERY_INTERFACES": "127.0.0.1"}
EXIT_TRUST = 4  # ssd-ctl: trust failure (unknown or changed server key)


def unique_name(stem: str) -> str:
    """An instance name no other test (or run) announces."""
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def pins(client_dir: Path) -> dict[str, str]:
    """The known-hosts lines: HOST:PORT -> key."""
    lines = (client_dir / "known_hosts").read_text().splitlines()
    return dict(line.split() for line in lines if line and not line.startswith("#"))


def test_a_spoofer_announcing_a_pinned_name_on_a_new_port_gets_the_key_changed_error(tmp_path: Path) -> None:
    """Pinned NAME:P; another key announced as NAME on port Q: exit 4 naming both fingerprints, nothing pinned;
    ``trust --replace NAME`` is the way to accept a real change, and it drops the old pin."""
    name, client_dir = unique_name("pinned"), tmp_path / "client"
    with announcing_daemon(tmp_path / "real", name) as real:
        first = ctl("info", name, "--trust", client_dir=client_dir, env=LOOPBACK_ONLY)
        assert first.returncode == 0, first.stderr
        real.stop_and_check()
    before = pins(client_dir)
    assert before == {f"{name}:{real.port}": real.info["public_key"]}
    with announcing_daemon(tmp_path / "spoofer", name) as spoofer:
        assert spoofer.port != real.port
        for attempt in (("info", name, "--trust"), ("trust", name)):
            result = ctl(*attempt, client_dir=client_dir, env=LOOPBACK_ONLY)
            assert result.returncode == EXIT_TRUST, (attempt, result.stdout, result.stderr)
            assert "SERVER KEY CHANGED" in result.stderr
            assert str(real.info["fingerprint"]) in result.stderr
            assert str(spoofer.info["fingerprint"]) in result.stderr
            assert pins(client_dir) == before
        replaced = ctl("trust", "--replace", name, client_dir=client_dir, env=LOOPBACK_ONLY)
        assert replaced.returncode == 0, replaced.stderr
        assert pins(client_dir) == {f"{name}:{spoofer.port}": spoofer.info["public_key"]}
        spoofer.stop_and_check()


def test_the_same_key_on_a_new_port_is_the_same_server(tmp_path: Path) -> None:
    """The real server restarted on another port (same key): no prompt, no error; the new port is pinned."""
    name, client_dir = unique_name("moved"), tmp_path / "client"
    with announcing_daemon(tmp_path / "before", name) as before:
        assert ctl("info", name, "--trust", client_dir=client_dir, env=LOOPBACK_ONLY).returncode == 0
        before.stop_and_check()
    (tmp_path / "after").mkdir()
    shutil.copytree(before.config_dir, tmp_path / "after" / "server-config")
    with announcing_daemon(tmp_path / "after", name) as after:
        assert after.port != before.port
        result = ctl("info", name, client_dir=client_dir, env=LOOPBACK_ONLY)  # no --trust: no new trust needed
        assert result.returncode == 0, result.stderr
        key = before.info["public_key"]
        assert pins(client_dir) == {f"{name}:{before.port}": key, f"{name}:{after.port}": key}
        after.stop_and_check()


def test_two_daemons_on_one_address_are_two_servers(tmp_path: Path) -> None:
    """Two users' daemons on one machine differ by port alone: a typed ADDRESS:PORT and a discovered name on
    that address each get their own first use, whatever is pinned for the address's other port."""
    client_dir = tmp_path / "client"
    (tmp_path / "alice").mkdir()
    alices = start_daemon(tmp_path / "alice")
    try:
        assert ctl("info", alices.host, "--trust", client_dir=client_dir).returncode == 0
        name = unique_name("bobs")
        with announcing_daemon(tmp_path / "bob", name) as bobs:
            assert bobs.info["public_key"] != alices.info["public_key"]
            for host in (name, bobs.host):
                untrusted = ctl("info", host, client_dir=client_dir, env=LOOPBACK_ONLY)
                assert untrusted.returncode == EXIT_TRUST
                assert "can't be established" in untrusted.stderr, untrusted.stderr
                trusted = ctl("info", host, "--trust", client_dir=client_dir, env=LOOPBACK_ONLY)
                assert trusted.returncode == 0, trusted.stderr
            bobs.stop_and_check()
        assert pins(client_dir) == {
            alices.host: alices.info["public_key"],
            bobs.host: bobs.info["public_key"],
            f"{name}:{bobs.port}": bobs.info["public_key"],
        }
    finally:
        alices.stop_and_check()

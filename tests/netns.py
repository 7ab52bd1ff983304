"""Test helpers for discovery: announcing daemons, two hosts in network namespaces, an avahi peer.

The namespaces hold a veth pair with 10.x addresses and a multicast route, so
mDNS flows between them and never touches the machine's real LAN interface.
Everything made here is removed by the context managers, also on failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from support.daemon import Daemon
from support.eventually import eventually

CTL = [sys.executable, "-m", "ssd.ctl.main"]


@dataclass(frozen=True)
class Namespace:
    """One network namespace with one end of the veth pair."""

    name: str
    device: str
    address: str

    def command(self, *argv: str) -> list[str]:
        """*argv* run inside this namespace."""
        return ["ip", "netns", "exec", self.name, *argv]


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, timeout=10)


@contextlib.contextmanager
def namespace_pair(tag: str = "") -> Iterator[tuple[Namespace, Namespace]]:
    """Two namespaces A (10.231.N.1) and B (10.231.N.2) joined by a veth pair, with multicast routes."""
    stem = f"ssdt{os.getpid() % 100000}{tag[:3]}"  # device names have at most 15 bytes
    subnet = 10 + os.getpid() % 200
    a = Namespace(f"{stem}a", f"{stem}va", f"10.231.{subnet}.1")
    b = Namespace(f"{stem}b", f"{stem}vb", f"10.231.{subnet}.2")
    try:
        for ns in (a, b):
            _ip("netns", "add", ns.name)
        _ip("link", "add", a.device, "type", "veth", "peer", "name", b.device)
        for ns in (a, b):
            _ip("link", "set", ns.device, "netns", ns.name)
            _ip("-n", ns.name, "addr", "add", f"{ns.address}/24", "dev", ns.device)
            _ip("-n", ns.name, "link", "set", ns.device, "up")
            _ip("-n", ns.name, "link", "set", "lo", "up")
            _ip("-n", ns.name, "route", "add", "224.0.0.0/4", "dev", ns.device)
        yield a, b
    finally:
        for ns in (a, b):
            kill_namespace(ns.name)


def kill_namespace(name: str) -> None:
    """Kill every process left in namespace *name* (all started by this test), then delete it."""
    pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def start_announcing_daemon(
    tmp: Path,
    name: str,
    *,
    bind: str = "127.0.0.1",
    env: dict[str, str] | None = None,
    netns: Namespace | None = None,
) -> Daemon:
    """Start ``ssd run`` with announcing on (support.daemon's start_daemon turns it off), wait for daemon.json."""
    config_dir, state_dir = tmp / "server-config", tmp / "server-state"
    full_env = {
        **os.environ,
        "SSD_CONFIG_DIR": str(config_dir),
        "SSD_STATE_DIR": str(state_dir),
        "SSD_DISCOVERY_REFRESH_INTERVAL": "0.2",
        "SSD_DISCOVERY_TXT_MIN_INTERVAL": "0",
        **(env or {}),
    }
    tmp.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ssd", "--bind", bind, "--port", "0", "--name", name]
    log_path = tmp / "daemon.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            netns.command(*argv) if netns else argv, env=full_env, cwd=tmp, stdout=log, stderr=log
        )
    return Daemon(process, config_dir, state_dir, log_path).wait_ready()


@contextlib.contextmanager
def announcing_daemon(tmp: Path, name: str, **options: object) -> Iterator[Daemon]:
    """A daemon that announces itself, stopped (and checked to exit 0) afterwards, killed if need be."""
    daemon = start_announcing_daemon(tmp, name, **options)  # type: ignore[arg-type]
    try:
        yield daemon
    finally:
        if daemon.process.poll() is None:
            daemon.process.send_signal(signal.SIGTERM)
            try:
                daemon.process.wait(15)
            except subprocess.TimeoutExpired:
                daemon.process.kill()
                daemon.process.wait()


def ctl(
    *args: str, client_dir: Path, netns: Namespace | None = None, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ssd-ctl (optionally inside a namespace) with its own client directory, no terminal."""
    full_env = {**os.environ, "SSD_CLIENT_DIR": str(client_dir), **(env or {})}
    argv = [*CTL, *args]
    return subprocess.run(
        netns.command(*argv) if netns else argv,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=client_dir.parent,
    )


_DBUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""

_AVAHI_CONFIG = """[server]
host-name=ssdtestpeer
use-ipv4=yes
use-ipv6=no
allow-interfaces={device}
enable-dbus=yes
ratelimit-interval-usec=0
[wide-area]
enable-wide-area=no
[publish]
publish-hinfo=no
publish-workstation=no
"""


@dataclass(frozen=True)
class AvahiPeer:
    """avahi-daemon with its own dbus system bus, inside one namespace."""

    namespace: Namespace
    bus: str  # DBUS_SYSTEM_BUS_ADDRESS for avahi-browse / avahi-publish

    def command(self, *argv: str) -> list[str]:
        """An avahi client command run in the namespace, talking to this peer's bus."""
        return self.namespace.command("env", f"DBUS_SYSTEM_BUS_ADDRESS={self.bus}", *argv)


@contextlib.contextmanager
def avahi_peer(tmp: Path, ns: Namespace) -> Iterator[AvahiPeer]:
    """Start dbus-daemon and avahi-daemon (Debian's) in *ns*; stop both afterwards."""
    tmp.mkdir(parents=True, exist_ok=True)
    socket_path = tmp / "system_bus_socket"
    (tmp / "dbus.conf").write_text(_DBUS_CONFIG.format(socket=socket_path))
    (tmp / "avahi.conf").write_text(_AVAHI_CONFIG.format(device=ns.device))
    peer = AvahiPeer(ns, f"unix:path={socket_path}")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with (tmp / "dbus.log").open("wb") as log:
            processes.append(
                subprocess.Popen(
                    ns.command("dbus-daemon", f"--config-file={tmp / 'dbus.conf'}", "--nofork", "--nopidfile"),
                    stdout=log,
                    stderr=log,
                )
            )
        eventually(socket_path.exists, "dbus-daemon to create its socket", timeout=10)
        # avahi keeps its pid file and socket in /run/avahi-daemon: give this one a private
        # tmpfs there (ip netns exec runs in its own mount namespace), so it cannot clash.
        Path("/run/avahi-daemon").mkdir(exist_ok=True)
        script = (
            "mount -t tmpfs tmpfs /run/avahi-daemon && exec avahi-daemon -f "
            f"{tmp / 'avahi.conf'} --no-drop-root --no-chroot --no-rlimits --no-proc-title"
        )
        with (tmp / "avahi.log").open("wb") as log:
            processes.append(
                subprocess.Popen(peer.command("sh", "-c", script), stdout=log, stderr=log, stdin=subprocess.DEVNULL)
            )
        log_path = tmp / "avahi.log"
        started = "Server startup complete"
        eventually(lambda: started in log_path.read_text(errors="replace"), "avahi to start", timeout=20)
        yield peer
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

"""The CURVE relay and the tunnel across two hosts (network namespaces A and B, joined by a veth pair):
Jupyter's semantics through both, nothing readable on the wire, the kernel's own ports out of reach,
strangers refused, and a tunnel that survives the link going down and up.

The daemon (and the kernels) run in A; every client runs in B, as a script (remote_session.py) or
ssd-ctl. tcpdump captures A's end of the veth.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from envfixtures import conda_copy, kernel_venv
from netns import CTL, Namespace, announcing_daemon, ctl, namespace_pair
from support.ci import require_root
from support.daemon import Daemon
from support.eventually import eventually
from support.procnet import tcp_listeners

from ssd.client.identity import client_keypair
from ssd.kernels.connection import CLASSIC_KEYS, CURVE_KEYS

REMOTE = str(Path(__file__).with_name("remote_session.py"))


@dataclass
class Hosts:
    """A daemon on A, a client directory for B, and how to run things in B."""

    a: Namespace
    b: Namespace
    daemon: Daemon
    client_dir: Path
    tmp: Path

    @property
    def host(self) -> str:
        """HOST for clients in B."""
        return f"{self.a.address}:{self.daemon.port}"

    def session(self, *args: str) -> dict[str, Any]:
        """Run a remote_session.py scenario in B; its JSON document."""
        done = subprocess.run(
            self.b.command(sys.executable, REMOTE, *args), capture_output=True, text=True, timeout=240, check=False
        )
        assert done.returncode == 0, f"{args[0]} failed:\n{done.stderr[-3000:]}"
        document: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return document


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    """Namespaces A and B; in A a daemon (user mode, as root) finding env ``sci``; B's key authorized."""
    require_root()
    tmp = tmp_path_factory.mktemp("relay")
    conda_copy(kernel_venv(), tmp / "envs" / "sci")
    env = {
        "SSD_ENVS_ENVS_DIRS": str(tmp / "envs"),
        "SSD_DISCOVERY_ANNOUNCE": "false",
        "SSD_KERNELS_STOP_ON_EXIT": "true",
    }
    with (
        namespace_pair("rl") as (a, b),
        announcing_daemon(tmp / "a", "relayhost", bind=a.address, env=env, netns=a) as daemon,
    ):
        client_dir = tmp / "client-b"
        daemon.authorize(client_keypair(client_dir).public)
        yield Hosts(a, b, daemon, client_dir, tmp)


@contextlib.contextmanager
def capture(ns: Namespace, path: Path) -> Iterator[Path]:
    """tcpdump on the namespace's veth end, every byte of every TCP packet, written to *path*."""
    process = subprocess.Popen(
        # --immediate-mode: every packet leaves the kernel's buffer at once, so none is lost at SIGINT.
        ns.command("tcpdump", "-i", ns.device, "--immediate-mode", "-U", "-s", "0", "-w", str(path), "tcp"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    line = process.stderr.readline()
    assert "listening on" in line, line
    try:
        yield path
    finally:
        eventually(settled(path), "tcpdump to write out the packets it saw", interval=0.3)
        process.send_signal(signal.SIGINT)
        process.wait(10)
        process.stderr.close()


def settled(path: Path) -> Callable[[], bool]:
    """A check: the capture file kept its size since the last look (tcpdump wrote out what it had)."""
    sizes = [-1]

    def check() -> bool:
        sizes.append(path.stat().st_size)
        return sizes[-1] == sizes[-2]

    return check


def test_relay_keeps_jupyter_semantics_and_the_wire_unreadable(hosts: Hosts) -> None:
    """From B with jupyter_client's CURVE keys: streams, displays, input(), interrupt, two clients, the
    heartbeat stopping when the kernel dies; the capture holds the control text but not the marker."""
    marker, control = f"SECRET-{secrets.token_hex(8)}", f"CLEAR-{secrets.token_hex(8)}"
    with capture(hosts.a, hosts.tmp / "relay.pcap") as pcap:
        hosts.session("clear", hosts.a.address, str(hosts.daemon.info["key_port"]), control)
        doc = hosts.session("relay", hosts.host, str(hosts.client_dir), marker)
    wire = pcap.read_bytes()
    assert control.encode() in wire  # the capture does see payloads
    assert marker.encode() not in wire
    assert b"forty-two" not in wire
    assert set(doc["info_keys"]) == {*CLASSIC_KEYS, *CURVE_KEYS}
    assert marker in doc["stream"]["stream"]
    assert doc["display"] == [{"text/html": "<b>bold</b>", "text/plain": "<IPython.core.display.HTML object>"}]
    assert doc["input"] == {"prompts": ["question? "], "stream": "got forty-two\n", "status": "ok"}
    assert doc["interrupt"] == {"status": "error", "ename": "KeyboardInterrupt"}
    two = doc["two_clients"]
    assert two["one_reply_to_own"]
    assert two["two_reply_to_own"]
    assert two["one_saw"] == two["two_saw"] == ["from-one", "from-two"]
    assert doc["connections_seen"] >= 1
    assert doc["heartbeat"] == {"before": True, "after": False}


def test_kernel_ports_unreachable_and_strangers_refused(hosts: Hosts) -> None:
    """The kernel binds ipc sockets in A, no TCP port: the TCP ports it listens on (only ipykernel's pipe
    for forked subprocesses, on 127.0.0.1) are closed to B, the relay's are open; a client with its own
    keypair (knowing the relay's public key and the HMAC key) or a wrong server key gets no answer, the
    right keys do."""
    started = hosts.session("start", hosts.host, str(hosts.client_dir))
    own = json.loads(Path(started["connection_file"]).read_text())
    assert own["transport"] == "ipc"
    kernel_ports = [str(port) for port in tcp_listeners(started["pid"])]
    assert not {str(own[f"{c}_port"]) for c in ("shell", "iopub", "stdin", "control", "hb")} & set(kernel_ports)
    closed = hosts.session("probe", hosts.a.address, *kernel_ports)["reachable"]
    assert not any(closed.values()), closed
    relay = started["relay"]
    assert hosts.session("probe", hosts.a.address, str(relay["shell_port"]))["reachable"] == {
        str(relay["shell_port"]): True
    }
    refused = hosts.session("stranger", hosts.host, str(hosts.client_dir), started["kernel_id"])
    assert refused == {"own_keypair_answered": False, "wrong_server_key_answered": False, "right_keys_answered": True}
    _stop(hosts, started["kernel_id"])


def _stop(hosts: Hosts, kernel_id: str) -> None:
    done = ctl("stop", hosts.host, kernel_id, client_dir=hosts.client_dir, netns=hosts.b)
    assert done.returncode == 0, done.stderr


class _Lines:
    """Collects a process's stream line by line in a thread; waits for a line containing some text."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in self.lines if text in line]
            if found:
                return found[-1]
            time.sleep(0.1)
        raise AssertionError(f"no line with {text!r} within {timeout} s; got {self.lines}")

    def join(self) -> None:
        self._thread.join(timeout=10)


def test_tunnel_serves_a_classic_file_and_survives_a_link_drop(hosts: Hosts) -> None:
    """ssd-ctl start --tunnel in B: a classic 0600 file (ipc sockets of B's user) works like the relay (streams,
    displays, input, interrupt), nothing readable on the wire; the veth goes down and up, the tunnel says
    it lost and regained the host, and the same file works again (two clients at once, the heartbeat
    stopping when the kernel is killed). Ctrl-C closes it and removes the file."""
    login = ctl("login", hosts.host, "--key-only", "--trust", client_dir=hosts.client_dir, netns=hosts.b)
    assert login.returncode == 0, login.stderr
    path = hosts.tmp / "tunnel.json"
    argv = [*CTL, "start", hosts.host, "sci", "--kind", "ipykernel", "--tunnel", "--connection-file", str(path)]
    env = {**os.environ, "SSD_CLIENT_DIR": str(hosts.client_dir)}
    process = subprocess.Popen(
        hosts.b.command(*argv, "--json"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    out, err = _Lines(process.stdout), _Lines(process.stderr)
    try:
        err.wait_for("connected to", 60)
        kernel_id = json.loads("".join(out.lines))["kernel_id"]
        local = json.loads(path.read_text())
        assert set(local) == set(CLASSIC_KEYS)
        assert local["transport"] == "ipc"
        assert path.stat().st_mode & 0o777 == 0o600
        marker = f"SECRET-{secrets.token_hex(8)}"
        with capture(hosts.a, hosts.tmp / "tunnel.pcap") as pcap:
            doc = hosts.session("direct", hosts.host, str(hosts.client_dir), str(path), kernel_id, marker)
        assert marker in doc["stream"]["stream"]
        assert doc["display"][0]["text/html"] == "<b>bold</b>"
        assert doc["input"]["stream"] == "got forty-two\n"
        assert doc["interrupt"]["ename"] == "KeyboardInterrupt"
        assert marker.encode() not in pcap.read_bytes()
        subprocess.run(["ip", "-n", hosts.a.name, "link", "set", hosts.a.device, "down"], check=True)
        try:
            err.wait_for("lost", 30)
        finally:
            subprocess.run(["ip", "-n", hosts.a.name, "link", "set", hosts.a.device, "up"], check=True)
        err.wait_for("reconnected", 60)
        again = hosts.session(
            "direct", hosts.host, str(hosts.client_dir), str(path), kernel_id, "after-the-drop", "finish"
        )
        assert "after-the-drop" in again["stream"]["stream"]
        assert again["two_clients"]["one_saw"] == again["two_clients"]["two_saw"] == ["from-one", "from-two"]
        assert again["two_clients"]["one_reply_to_own"]
        assert again["two_clients"]["two_reply_to_own"]
        assert again["heartbeat"] == {"before": True, "after": False}  # through the tunnel too
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0
        assert not path.exists()
        assert not Path(local["ip"]).parent.exists()  # the tunnel's socket folder went with it
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        out.join()
        err.join()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    _stop(hosts, kernel_id)

"""A local user cannot reach another user's kernel (issue 13, finding 2), as root in CI with real users.

Alice starts kernels through a real system-mode daemon; Bob, a second real user, runs ``stranger.py``
as himself: he connects to the kernel's socket paths, reads the ZMTP greeting of every TCP port
listening under Alice's uid (as /proc/net/tcp shows them to anyone) and subscribes to all of them while
Alice's kernel prints a marker. Before the fix the kernel listened on 127.0.0.1 and Bob read the
marker on its iopub port; so did he on the port of Alice's tunnel.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from envfixtures import conda_copy, kernel_venv, list_in_environments_txt, public_dir
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.connect import KernelConnectionInfo
from support.ci import require_root
from support.daemon import Daemon, new_client
from support.procnet import tcp_listeners
from users import User, chown_tree, login, system_daemon, users

from ssd.client import Client

HERE = Path(__file__).parent
PORT_KEYS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


@dataclass
class Site:
    """The module's daemon, Alice (with an environment and a logged-in client) and Bob."""

    daemon: Daemon
    alice: User
    bob: User
    client: Client


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A system-mode daemon, Alice logged in with env ``sci``, Bob with nothing."""
    require_root()
    tmp = tmp_path_factory.mktemp("isolation")
    with users(2) as (alice, bob), public_dir() as where, system_daemon(tmp) as daemon:
        home = where / alice.name
        home.mkdir(mode=0o755)
        chown_tree(conda_copy(kernel_venv(), home / "sci"), alice)
        list_in_environments_txt(alice.home, home / "sci")
        chown_tree(alice.home / ".conda", alice)
        client = new_client(daemon, tmp / "client-alice", timeout=60)
        client.connect()
        try:
            login(client, alice.name, alice.password)
            yield Site(daemon, alice, bob, client)
        finally:
            for kernel in client.kernel_list():
                client.kernel_shutdown(kernel.kernel_id)
            client.close()


def as_user(user: User) -> dict[str, Any]:
    """subprocess options that run a child as *user* alone (groups, gid, uid), in a clean environment."""
    env = {"HOME": str(user.home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    return {"user": user.uid, "group": user.gid, "extra_groups": [], "env": env, "cwd": "/"}


def socket_paths(info: dict[str, Any]) -> list[str]:
    """The five socket files of an ipc connection info (none for TCP)."""
    if info.get("transport") != "ipc":
        return []
    return [f"{info['ip']}-{info[key]}" for key in PORT_KEYS]


class Stranger:
    """``stranger.py`` running as Bob: his first report, then everything he received when told to stop."""

    def __init__(self, bob: User, victim: User, paths: list[str]) -> None:
        argv = [sys.executable, "-I", str(HERE / "stranger.py"), str(victim.uid), *paths]
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **as_user(bob)
        )
        self.report: dict[str, Any] = self._line()

    def _line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            assert self.process.stderr is not None
            raise AssertionError(f"stranger.py failed: {self.process.stderr.read()[-3000:]}")
        return cast(dict[str, Any], json.loads(line))

    def received(self) -> list[str]:
        """Stop listening; every frame Bob received."""
        assert self.process.stdin is not None
        self.process.stdin.write("stop\n")
        self.process.stdin.flush()
        frames = cast(list[str], self._line()["received"])
        assert self.process.wait(30) == 0
        return frames

    def close(self) -> None:
        """Make sure the process is gone and its pipes closed."""
        _end(self.process)


@contextmanager
def stranger(bob: User, victim: User, paths: list[str]) -> Iterator[Stranger]:
    """Bob attacking *victim*'s sockets until the block ends."""
    probe = Stranger(bob, victim, paths)
    try:
        yield probe
    finally:
        probe.close()


def printed_through(info: dict[str, Any], marker: str) -> str:
    """Print *marker* in the kernel with jupyter_client on *info*; what came back on iopub."""
    client = BlockingKernelClient()
    client.load_connection_info(cast(KernelConnectionInfo, info))
    client.start_channels()
    printed: list[str] = []
    try:
        client.wait_for_ready(timeout=30)
        reply = client.execute_interactive(
            f"print({marker!r})",
            timeout=30,
            output_hook=lambda msg: printed.append(msg["content"]["text"]) if msg["msg_type"] == "stream" else None,
        )
    finally:
        client.stop_channels()
    assert reply["content"]["status"] == "ok", reply["content"]
    return "".join(printed)


def assert_private(paths: list[str], owner: User) -> None:
    """Five sockets in one folder of *owner* that nobody else may enter, with paths short enough anywhere."""
    assert len(paths) == 5
    folder = Path(paths[0]).parent
    assert {str(Path(path).parent) for path in paths} == {str(folder)}
    info = folder.lstat()
    assert (info.st_uid, info.st_mode & 0o777) == (owner.uid, 0o700)
    assert max(len(path) for path in paths) < 100  # sun_path: 108 bytes on Linux, 104 on macOS


def assert_nothing_for_bob(
    report: dict[str, Any], received: list[str], paths: list[str], relay: dict[str, Any]
) -> None:
    """Bob received nothing, every socket path refused him, and every TCP port of Alice's is closed to him:
    the relay's refuse a client without its CURVE keys, and the others are PULL sockets, which never send
    (ipykernel's pipe for the output of forked subprocesses, always on 127.0.0.1, which drops any message
    without the kernel's random token)."""
    assert received == []
    assert report["ipc"] == dict.fromkeys(paths, "EACCES")
    relay_ports = {str(relay[key]) for key in PORT_KEYS}
    assert {port: kind for port, kind in report["tcp"].items() if port in relay_ports} == dict.fromkeys(
        relay_ports, "refused"
    )
    # Her other ports: PULL sockets, or the CURVE relays of her other kernels (a spare kept for her next
    # start has one), which refuse Bob as this kernel's relay does.
    assert {kind for port, kind in report["tcp"].items() if port not in relay_ports} <= {"PULL", "refused"}, report[
        "tcp"
    ]


@pytest.mark.root
@pytest.mark.parametrize("kind", ["spyder", "ipykernel"])
def test_another_user_cannot_reach_a_kernel(site: Site, kind: str) -> None:
    """Alice's kernel binds ipc sockets in her 0700 folder and no TCP port a client could use; Bob gets
    EACCES on the sockets and nothing on any TCP port of hers while her kernel prints a marker, which she
    reads through the relay. Shutdown removes the sockets and the folder."""
    reply = site.client.kernel_start("sci", kind)
    kernel_id, pid = reply.kernel.kernel_id, reply.kernel.pid
    own = json.loads(Path(reply.connection_file).read_text())
    paths = socket_paths(own)
    kernel_ports = {str(port) for port in tcp_listeners(pid)}
    marker = f"SECRET-{secrets.token_hex(8)}"
    relay = site.client.connection_info(reply.connection)
    with stranger(site.bob, site.alice, paths) as bob:
        assert marker in printed_through(relay, marker)
        received = bob.received()
    assert not [frame for frame in received if marker in frame]
    assert_nothing_for_bob(bob.report, received, paths, relay)
    assert kernel_ports <= set(bob.report["tcp"])  # Bob saw every port of the kernel: each one a PULL
    assert {bob.report["tcp"][port] for port in kernel_ports} <= {"PULL"}
    assert own["transport"] == "ipc"
    assert_private(paths, site.alice)
    site.client.kernel_shutdown(kernel_id)
    assert not Path(paths[0]).parent.exists()


class UserTunnel:
    """``tunnel_user.py`` running as the victim: ``ssd.client.tunnel.Tunnel`` on *remote*, driven by lines."""

    def __init__(self, user: User, remote: dict[str, Any]) -> None:
        argv = [sys.executable, "-I", str(HERE / "tunnel_user.py")]
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **as_user(user)
        )
        self.local = self.say(json.dumps(remote))

    def say(self, line: str) -> Any:
        """Send one line, return the JSON line it answers."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            assert self.process.stderr is not None
            raise AssertionError(f"tunnel_user.py failed: {self.process.stderr.read()[-3000:]}")
        return json.loads(answer)

    def close(self) -> None:
        """Make sure the process is gone and its pipes closed."""
        _end(self.process)


@pytest.mark.root
def test_another_user_cannot_reach_a_tunnel(site: Site) -> None:
    """Alice's tunnel (run as Alice) binds ipc sockets in her 0700 folder; Bob gets EACCES on them and
    nothing on any TCP port of hers while she prints a marker through the tunnel; closing it removes them."""
    reply = site.client.kernel_start("sci", "ipykernel")
    relay = site.client.connection_info(reply.connection)
    tunnel = UserTunnel(site.alice, relay)
    try:
        paths = socket_paths(tunnel.local)
        marker = f"SECRET-{secrets.token_hex(8)}"
        with stranger(site.bob, site.alice, paths) as bob:
            ran = tunnel.say(f"run {marker}")
            received = bob.received()
        assert ran == {"status": "ok", "stream": f"{marker}\n"}
        assert not [frame for frame in received if marker in frame]
        assert_nothing_for_bob(bob.report, received, paths, relay)
        assert tunnel.local["transport"] == "ipc"
        assert_private(paths, site.alice)
        assert tunnel.say("stop") == {"left": []}
        assert tunnel.process.wait(30) == 0
        assert not Path(paths[0]).parent.exists()
    finally:
        tunnel.close()
        site.client.kernel_shutdown(reply.kernel.kernel_id)


def _end(process: subprocess.Popen[str]) -> None:
    """Kill *process* if it still runs, reap it and close its pipes."""
    if process.poll() is None:
        process.kill()
        process.wait()
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()

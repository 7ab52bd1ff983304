"""Whatever goes wrong, ssd-ctl says it in a line with the exit code scripts rely on, never a traceback.

Each kind of failure is made for real: a client directory that cannot be made
(OSError), too few file descriptors for ZeroMQ (zmq.ZMQError), a CURVE server
that never answers (a timeout), Ctrl-C while waiting for it.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq
from support.eventually import eventually

from ssd.errors import ErrorCode

CTL = [sys.executable, "-m", "ssd.ctl.main"]
Silent = tuple[str, zmq.Socket[bytes]]  # HOST, and the server's socket


def ctl(*args: str, client_dir: Path, limit: int | None = None) -> subprocess.CompletedProcess[str]:
    """Run ssd-ctl to its end (with at most *limit* open files)."""
    env = {**os.environ, "SSD_CLIENT_DIR": str(client_dir)}
    return subprocess.run(
        [*CTL, *args], env=env, capture_output=True, text=True, timeout=60, preexec_fn=_files(limit) if limit else None
    )


def _files(limit: int) -> Callable[[], None]:
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return lower


@pytest.fixture
def silent_server(client_dir: Path) -> Iterator[Silent]:
    """A CURVE ROUTER whose key this client has pinned: it completes the handshake, then never answers."""
    public, secret = zmq.curve_keypair()
    with zmq.Context() as ctx, ctx.socket(zmq.ROUTER) as router:
        router.curve_server = True
        router.curve_secretkey = secret
        router.curve_publickey = public
        port = router.bind_to_random_port("tcp://127.0.0.1")
        client_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (client_dir / "known_hosts").write_text(f"127.0.0.1:{port} {public.decode()}\n")
        yield f"127.0.0.1:{port}", router


def test_a_file_that_cannot_be_written_is_a_line_and_exit_1(tmp_path: Path) -> None:
    """OSError: the client directory would be inside a plain file."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = ctl("keygen", client_dir=blocker / "client")
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("ssd-ctl: error: ")
    assert str(blocker) in result.stderr
    assert "Traceback" not in result.stderr
    document = json.loads(ctl("keygen", "--json", client_dir=blocker / "client").stdout)
    assert document["error"] == "local_error"  # the wire value: scripts match on it


def test_zeromq_failing_is_a_line_not_a_traceback(silent_server: Silent, client_dir: Path) -> None:
    """zmq.ZMQError: with too few file descriptors ZeroMQ cannot open its sockets."""
    host, _ = silent_server
    limits = range(12, 20)  # from too few for ZeroMQ to enough; fewer still and libzmq aborts (a C assertion)
    results = {limit: ctl("info", host, "--timeout", "2", client_dir=client_dir, limit=limit) for limit in limits}
    for limit, result in results.items():
        assert "Traceback" not in result.stderr, (limit, result.stderr)
        assert result.returncode in (1, 3), (limit, result.stderr)
    zmq_failed = [r for r in results.values() if "ZeroMQ: Too many open files" in r.stderr]
    assert zmq_failed, {limit: r.stderr for limit, r in results.items()}
    assert all(r.returncode == 1 for r in zmq_failed)


def test_a_server_that_never_answers_is_a_timeout(silent_server: Silent, client_dir: Path) -> None:
    """The request reaches the server and no reply comes: exit 3, said as a timeout."""
    host, router = silent_server
    result = ctl("info", host, "--timeout", "1", "--json", client_dir=client_dir)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(result.stdout)["error"] == ErrorCode.TIMEOUT
    assert router.poll(0), "the request never reached the server: this was not a timeout"


def test_ctrl_c_while_waiting_is_exit_130(silent_server: Silent, client_dir: Path) -> None:
    """SIGINT while waiting for a reply: 'interrupted', exit 130, no traceback."""
    host, router = silent_server
    env = {**os.environ, "SSD_CLIENT_DIR": str(client_dir)}
    waiting = subprocess.Popen(
        [*CTL, "info", host, "--timeout", "60"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        eventually(lambda: router.poll(0) != 0, "the request to reach the server")
        waiting.send_signal(signal.SIGINT)
        _, err = waiting.communicate(timeout=30)
    finally:
        waiting.kill()
        waiting.wait()
    assert waiting.returncode == 130, err
    assert "ssd-ctl: error: interrupted" in err
    assert "Traceback" not in err

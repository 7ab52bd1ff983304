"""A client that floods the broker does not starve another client."""

from __future__ import annotations

import threading
from pathlib import Path

import zmq
from support.daemon import Daemon, new_client

from ssd.protocol import Wire


def _flood(daemon: Daemon, count: int, done: threading.Event) -> None:
    """Send *count* pings without reading a single reply."""
    public, secret = zmq.curve_keypair()
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.sndhwm = 0  # unlimited: push as hard as the broker lets us
        sock.curve_serverkey = str(daemon.info["public_key"]).encode()
        sock.curve_publickey, sock.curve_secretkey = public, secret
        sock.connect(f"tcp://{daemon.host}")
        _, frames = Wire().serialize("ping_request", {"data": "x" * 512})
        for _ in range(count):
            sock.send_multipart(frames)
        done.set()
    finally:
        ctx.destroy(linger=0)


def test_flooding_client_does_not_starve_others(daemon: Daemon, tmp_path: Path) -> None:
    """While one key sends 20,000 requests and reads nothing, another key's pings are all answered."""
    done = threading.Event()
    flooder = threading.Thread(target=_flood, args=(daemon, 20_000, done))
    client = new_client(daemon, tmp_path / "c", timeout=10)
    client.connect()
    try:
        flooder.start()
        answered = [client.ping(str(n)).data for n in range(50)]
    finally:
        flooder.join(60)
        client.close()
    assert answered == [str(n) for n in range(50)]
    assert done.is_set()
    assert daemon.process.poll() is None

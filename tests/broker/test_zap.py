"""The per-address connection throttle: pure policy, then for real through ZAP."""

from __future__ import annotations

from pathlib import Path

import zmq
from support.daemon import start_daemon
from zmq.utils.monitor import recv_monitor_message

from ssd.broker.policy import ConnectionThrottle


def test_throttle_allows_a_burst_then_the_rate() -> None:
    """An address gets `burst` connections at once, then one per 1/rate seconds; others are unaffected."""
    now = [0.0]
    throttle = ConnectionThrottle(burst=3, rate=2.0, clock=lambda: now[0])
    assert [throttle.admit("a") for _ in range(4)] == [True, True, True, False]
    assert throttle.admit("b")
    now[0] += 0.5
    assert throttle.admit("a")
    assert not throttle.admit("a")
    assert throttle.should_log("a")
    assert not throttle.should_log("a")


def test_handshakes_beyond_the_burst_are_refused(tmp_path: Path) -> None:
    """With a burst of 3 and a tiny rate, a 4th new connection's CURVE handshake fails; the log says why."""
    daemon = start_daemon(tmp_path, extra_env={"SSD_AUTH_CONNECTION_BURST": "3", "SSD_AUTH_CONNECTION_RATE": "0.01"})
    ctx = zmq.Context()
    outcomes = []
    sockets: list[zmq.Socket[bytes]] = []
    try:
        for _ in range(4):
            public, secret = zmq.curve_keypair()
            sock = ctx.socket(zmq.DEALER)
            sockets.append(sock)
            sock.linger = 0
            sock.curve_serverkey = str(daemon.info["public_key"]).encode()
            sock.curve_publickey, sock.curve_secretkey = public, secret
            monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
            sock.connect(f"tcp://{daemon.host}")
            outcomes.append(monitor.poll(5000) and recv_monitor_message(monitor)["event"])
            sock.disable_monitor()
            monitor.close()
    finally:
        for sock in sockets:
            sock.close(linger=0)
        ctx.destroy(linger=0)
        daemon.stop_and_check()
    assert outcomes[:3] == [zmq.EVENT_HANDSHAKE_SUCCEEDED] * 3
    assert outcomes[3] == zmq.EVENT_HANDSHAKE_FAILED_AUTH
    assert "over its connection rate" in daemon.log()

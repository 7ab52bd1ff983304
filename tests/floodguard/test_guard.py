"""The flood guard on real sockets: TCP_INFO's byte count, and a real flood cut off a real ROUTER and reported."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import zmq
from support.eventually import eventually

from ssd.floodguard.guard import Cut, FloodGuard, bytes_received, memory_in_use
from ssd.floodguard.policy import FloodPolicy

FLOODER = str(Path(__file__).parents[1] / "security" / "flooder.py")


def test_bytes_received_reads_the_kernels_count() -> None:
    """tcpi_bytes_received (offset 128 of struct tcp_info) is what the peer sent; a pipe has none."""
    with socket.create_server(("127.0.0.1", 0)) as server, socket.create_connection(server.getsockname()) as client:
        conn, _ = server.accept()
        with conn:
            client.sendall(b"x" * 100_000)
            received = 0
            while received < 100_000:
                received += len(conn.recv(65536))
            assert bytes_received(conn.fileno()) == 100_000
            assert bytes_received(client.fileno()) == 0
    read, write = os.pipe()
    try:
        assert bytes_received(read) is None
    finally:
        os.close(read)
        os.close(write)


def test_memory_in_use_follows_allocations() -> None:
    """Allocating 64 MiB through malloc shows in memory_in_use; freeing it shows too."""
    before = memory_in_use()
    block = bytearray(64 << 20)
    during = memory_in_use()
    del block
    assert during - before >= 60 << 20
    assert memory_in_use() - before < 8 << 20


def test_a_flood_is_cut_and_a_quiet_client_is_not() -> None:
    """A real attacker process floods a ROUTER with 2-byte frames; the guard cuts it, a quiet DEALER goes on."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    cuts: list[Cut] = []
    guard = FloodGuard(ctx, [router], FloodPolicy(16 << 20), on_cut=cuts.append)
    guard.start_guarding()
    quiet = ctx.socket(zmq.DEALER)
    quiet.linger = 0
    try:
        port = router.bind_to_random_port("tcp://127.0.0.1")
        quiet.connect(f"tcp://127.0.0.1:{port}")
        quiet.send(b"hello")
        assert router.poll(10_000)
        assert router.recv_multipart()[1] == b"hello"
        attacker = subprocess.run(
            [sys.executable, FLOODER, "raw", str(port), str(200_000_000)],
            capture_output=True,
            text=True,
            timeout=50,
            check=True,
        )
        assert json.loads(attacker.stdout)["outcome"] == "cut"
        assert guard.cuts == 1
        (cut,) = eventually(lambda: list(cuts) or None, "the cut reported")
        assert cut.uid == os.getuid()  # the attacker process is ours
        assert cut.freed >= 8 << 20, "the cut freed less than half the threshold"
        quiet.send(b"still here")
        assert router.poll(10_000)
        assert router.recv_multipart()[1] == b"still here"  # not the flood: that never arrived
    finally:
        guard.stop()
        quiet.close()
        router.close()
        ctx.term()

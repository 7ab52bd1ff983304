"""The relay loop (ssd.kernels.relayloop) in this process, on real sockets: every relay of a RelayHost is
forwarded by one thread, and a kernel that stops reading holds back its own channel, losing nothing, while the
other relays of the same loop go on."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from ssd.kernels.record import KernelRecord
from ssd.kernels.relay import CHANNELS, Relay, new_relay_keys
from ssd.kernels.relayhost import RelayHost

PAYLOAD = 10_000  # bytes a message: the socket buffers on the way fill after a few thousand
STUCK_MS = 500  # a client that cannot send for this long has filled every queue to the stuck kernel
MOST = 20_000  # messages: far more than the queues to a stuck kernel hold (a relay that drops never fills)


def _record(n: int, folder: Path) -> KernelRecord:
    """A kernel record whose channels are ipc sockets in *folder*, bound by the test (or by nothing)."""
    connection: dict[str, Any] = {"transport": "ipc", "ip": str(folder / f"k{n}"), "key": "k"}
    connection.update({f"{channel}_port": port for port, channel in enumerate(CHANNELS, 1)})
    connection.update(signature_scheme="hmac-sha256", kernel_name="")
    fields: dict[str, Any] = {"user": "u", "name": "", "env": "", "env_name": "", "kind": "ipykernel", "pid": 0}
    fields |= {"start_ticks": 0, "started": 0.0, "connection_file": "", "log_file": "", "cwd": ""}
    return KernelRecord(kernel_id=f"k{n}", connection=connection, argv=[], environ={}, relay=new_relay_keys(), **fields)


class Ends:
    """A client on a relay's shell (CURVE, with the kernel's keypair) and the kernel's shell socket behind it."""

    def __init__(self, ctx: zmq.Context[Any], record: KernelRecord, relay: Relay) -> None:
        assert record.relay is not None
        self.kernel = ctx.socket(zmq.ROUTER)
        self.kernel.linger = 0
        self.kernel.rcvhwm = 1
        self.kernel.bind(f"ipc://{record.connection['ip']}-{record.connection['shell_port']}")
        self.client = ctx.socket(zmq.DEALER)
        self.client.linger = 0
        self.client.curve_serverkey = self.client.curve_publickey = record.relay["curve_publickey"].encode()
        self.client.curve_secretkey = record.relay["curve_secretkey"].encode()
        self.client.connect(f"tcp://127.0.0.1:{relay.ports['shell']}")

    def round_trip(self) -> None:
        """A request through the relay to the kernel and its answer back."""
        self.client.send(b"ping")
        assert self.kernel.poll(20_000), "the request did not come through the relay"
        *routing, body = self.kernel.recv_multipart()
        self.kernel.send_multipart([*routing, body + b" answered"])
        assert self.client.poll(20_000), "the answer did not come back through the relay"
        assert self.client.recv() == b"ping answered"

    def close(self) -> None:
        """Close both sockets."""
        self.client.close(linger=0)
        self.kernel.close(linger=0)


@pytest.fixture
def host() -> Iterator[RelayHost]:
    """A kernel worker's RelayHost, stopped (its context terminated) at the end."""
    relays = RelayHost("127.0.0.1")
    yield relays
    relays.stop()


def test_one_thread_forwards_for_every_relay(host: RelayHost, tmp_path: Path) -> None:
    """Ten relays, opened from an event loop as the worker does, add no thread to the one their RelayHost
    started (a proxy thread per channel added 50), and each carries a round trip."""

    async def scenario() -> None:
        ctx: zmq.Context[Any] = zmq.Context()
        ends: list[Ends] = []
        try:
            before = threading.active_count()
            for n in range(10):
                record = _record(n, tmp_path)
                ends.append(Ends(ctx, record, host.open(record)))
            assert threading.active_count() == before
            for end in ends:
                end.round_trip()
        finally:
            for end in ends:
                end.close()
            for n in range(10):
                host.close(f"k{n}")
            ctx.term()

    asyncio.run(scenario())


def _fill(client: zmq.Socket[Any]) -> int:
    """Send numbered messages until none has gone for STUCK_MS (or MOST went); how many went."""
    sent = 0
    while sent < MOST and client.poll(STUCK_MS, zmq.POLLOUT):
        try:
            client.send(sent.to_bytes(4, "big") + bytes(PAYLOAD), zmq.NOBLOCK)
            sent += 1
        except zmq.Again:
            continue
    return sent


def test_a_kernel_that_stops_reading_holds_back_only_its_channel(host: RelayHost, tmp_path: Path) -> None:
    """A kernel that reads nothing: its client's messages back up to the client and none is dropped (each
    arrives, in order, once the kernel reads), while another relay of the same loop keeps answering."""
    ctx: zmq.Context[Any] = zmq.Context()
    records = [_record(n, tmp_path) for n in range(2)]
    stuck, other = (Ends(ctx, record, host.open(record)) for record in records)
    try:
        stuck.round_trip()  # connected end to end
        sent = _fill(stuck.client)
        assert 1000 < sent < MOST, f"{sent} messages went before the client's queue filled"
        other.round_trip()
        for expected in range(sent):
            assert stuck.kernel.poll(20_000), f"message {expected} of {sent} never arrived"
            *_, body = stuck.kernel.recv_multipart()
            assert int.from_bytes(body[:4], "big") == expected
    finally:
        stuck.close()
        other.close()
        ctx.term()

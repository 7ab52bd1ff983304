"""How many relays one kernel worker holds: its RelayHost opens relays (22 libzmq sockets each) until the
descriptor limit, not libzmq's default table of 1023 sockets, which stopped the 47th (issue 17, docs/scale.md).
Real relays on loopback in this process, each in front of its own ipc "kernel" endpoints; the first and the
last relay carry a CURVE round trip to the socket bound behind them.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from ssd.kernels.record import KernelRecord
from ssd.kernels.relay import CHANNELS, Relay, new_relay_keys
from ssd.kernels.relayhost import DEFAULT_MAX_SOCKETS, RelayHost, max_sockets

RELAYS = 50  # more than the 46 that libzmq's default socket table held
NOFILE = 4096  # 50 relays hold about 1600 descriptors (32 each)


@pytest.fixture
def nofile() -> Iterator[None]:
    """A soft descriptor limit with room for the relays (as the unit's LimitNOFILE=65536 gives a worker)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _record(n: int, folder: Path) -> KernelRecord:
    """A kernel record whose channels are ipc sockets in *folder* (bound by the test, or by nothing)."""
    connection: dict[str, Any] = {"transport": "ipc", "ip": str(folder / f"k{n}"), "key": "k"}
    connection.update({f"{channel}_port": port for port, channel in enumerate(CHANNELS, 1)})
    connection.update(signature_scheme="hmac-sha256", kernel_name="")
    relay = {"bind": "127.0.0.1", **new_relay_keys()}
    return KernelRecord(
        kernel_id=f"00000000-0000-4000-8000-{n:012d}",
        user="u",
        name="",
        env="",
        env_name="",
        kind="ipykernel",
        pid=0,
        start_ticks=0,
        started=0.0,
        connection=connection,
        connection_file="",
        log_file="",
        cwd="",
        argv=[],
        environ={},
        relay=relay,
    )


def _round_trip(ctx: zmq.Context[Any], record: KernelRecord, relay: Relay) -> None:
    """A request through the relay's CURVE shell socket to the socket bound behind it, and the answer back."""
    assert record.relay is not None
    behind = ctx.socket(zmq.ROUTER)
    client = ctx.socket(zmq.DEALER)
    try:
        behind.bind(f"ipc://{record.connection['ip']}-{record.connection['shell_port']}")
        client.curve_serverkey = record.relay["curve_publickey"].encode()
        client.curve_publickey = record.relay["curve_publickey"].encode()
        client.curve_secretkey = record.relay["curve_secretkey"].encode()
        client.connect(f"tcp://127.0.0.1:{relay.ports['shell']}")
        client.send(b"ping")
        assert behind.poll(20_000), "the request did not come through the relay"
        *routing, body = behind.recv_multipart()  # the relay's routing id, then the client's (as a kernel sees)
        behind.send_multipart([*routing, body + b" answered"])
        assert client.poll(20_000), "the answer did not come back through the relay"
        assert client.recv() == b"ping answered"
    finally:
        client.close(linger=0)
        behind.close(linger=0)


async def _open_and_use(records: list[KernelRecord]) -> None:
    """Open every relay in one RelayHost (in the event loop, which follows each relay's monitor), use the first
    and the last, stop them all."""
    host = RelayHost("127.0.0.1")
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        relays = [host.open(record) for record in records]
        assert len({relay.ports["shell"] for relay in relays}) == len(records)
        for n in (0, len(records) - 1):
            _round_trip(ctx, records[n], relays[n])
    finally:
        ctx.term()
        host.stop()


def test_one_worker_holds_more_relays_than_the_default_socket_table(nofile: None, tmp_path: Path) -> None:
    """50 relays in one RelayHost (the 47th failed with libzmq's default table of 1023 sockets); the first and
    the last both relay."""
    asyncio.run(_open_and_use([_record(n, tmp_path) for n in range(RELAYS)]))


def test_the_socket_table_follows_the_descriptor_limit() -> None:
    """As many sockets as descriptors, within libzmq's own limit, never fewer than its default."""
    assert max_sockets(65536, 65535) == 65535
    assert max_sockets(4096, 65535) == 4096
    assert max_sockets(256, 65535) == DEFAULT_MAX_SOCKETS
    assert max_sockets(resource.RLIM_INFINITY, 65535) == 65535

"""Learning and checking a server's key: the key port and the CURVE handshake outcome."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import msgspec
import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from ssd.broker.keyport import KEY_REPLY, KEY_REQUEST
from ssd.client.hostspec import HostSpec
from ssd.keys import is_valid_public_key

__all__ = ["Handshake", "OfferedKey", "fetch_server_key", "wait_handshake"]


@dataclass(frozen=True)
class OfferedKey:
    """What a server's key port said: its public key and name (not proof of anything)."""

    public_key: bytes
    info: dict[str, Any]


async def fetch_server_key(ctx: zmq.asyncio.Context, spec: HostSpec, timeout: float) -> OfferedKey | None:
    """Ask the key port for the server's public key; None if nothing sensible answers."""
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.maxmsgsize = 4096
    try:
        sock.connect(spec.endpoint(spec.key_port))
        await sock.send_multipart([KEY_REQUEST])
        if not await sock.poll(timeout * 1000):
            return None
        frames = await sock.recv_multipart()
    finally:
        sock.close()
    if len(frames) != 3 or frames[0] != KEY_REPLY or not is_valid_public_key(frames[1]):
        return None
    try:
        info = msgspec.json.decode(frames[2])
    except msgspec.DecodeError:
        info = {}
    return OfferedKey(frames[1], info if isinstance(info, dict) else {})


class Handshake:
    """Outcomes of watching a socket's first connection."""

    OK = "ok"
    REFUSED = "refused"  # the server dropped us during the handshake: wrong server key?
    NO_ANSWER = "no_answer"  # no TCP connection at all within the timeout


_FAILED = {
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
    zmq.EVENT_HANDSHAKE_FAILED_AUTH,
}


async def wait_handshake(sock: zmq.asyncio.Socket, endpoint: str, timeout: float) -> str:
    """Connect *sock* to *endpoint* and report how its CURVE handshake went."""
    monitor = sock.get_monitor_socket(
        zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECTED | _mask(_FAILED)
    )
    connected = False
    try:
        sock.connect(endpoint)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            if not await monitor.poll(left * 1000):
                break
            event = parse_monitor_message(await monitor.recv_multipart())["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                return Handshake.OK
            if event == zmq.EVENT_CONNECTED:
                connected = True
            elif event in _FAILED or (event == zmq.EVENT_DISCONNECTED and connected):
                return Handshake.REFUSED
        return Handshake.REFUSED if connected else Handshake.NO_ANSWER
    finally:
        sock.disable_monitor()
        with contextlib.suppress(zmq.ZMQError):
            monitor.close(linger=0)


def _mask(events: set[zmq.Event]) -> int:
    value = 0
    for event in events:
        value |= int(event)
    return value

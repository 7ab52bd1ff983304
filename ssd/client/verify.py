"""Learning and checking a server's key: the key port, its certificate and the CURVE handshake outcome."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from ssd.broker.keyport import KEY_HEADER, KEY_REQUEST, parse_header
from ssd.certs import verify_server_certificate
from ssd.client.hostspec import HostSpec
from ssd.errors import CertificateError
from ssd.keys import is_valid_public_key

__all__ = ["Handshake", "OfferedKey", "certified_key", "fetch_server_key", "wait_handshake"]

# The key reply carries the certificate chain too: room for a leaf and a few CA certificates.
MAX_KEY_REPLY = 64 * 1024


@dataclass(frozen=True)
class OfferedKey:
    """What a server's key port said: its public key and name (not proof of anything)."""

    public_key: bytes
    info: dict[str, Any]


async def fetch_server_key(spec: HostSpec, timeout: float) -> OfferedKey | None:
    """Ask the key port (plain TCP, ``ssd.broker.keyport``) for the server's public key; None if nothing sensible
    answers within *timeout*."""
    try:
        return await asyncio.wait_for(_ask_key_port(spec), timeout)
    except (TimeoutError, OSError, asyncio.IncompleteReadError):
        return None


async def _ask_key_port(spec: HostSpec) -> OfferedKey | None:
    reader, writer = await asyncio.open_connection(spec.address or spec.host, spec.key_port, limit=MAX_KEY_REPLY)
    try:
        writer.write(KEY_REQUEST)
        await writer.drain()
        header = parse_header(await reader.readexactly(KEY_HEADER.size))
        if header is None or not is_valid_public_key(header[0]) or header[1] > MAX_KEY_REPLY:
            return None
        body = await reader.readexactly(header[1])
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    try:
        info = msgspec.json.decode(body)
    except msgspec.DecodeError:
        info = {}
    return OfferedKey(header[0], info if isinstance(info, dict) else {})


def certified_key(offered: OfferedKey, ca_file: Path, spec: HostSpec) -> bytes:
    """Return the offered key if the server's certificate chains to *ca_file*, names the host and binds the key.

    The caller then handshakes with this key, which proves the server holds
    its secret: so a valid certificate replaces trust on first use.
    """
    try:
        ca_pem = ca_file.read_bytes()
    except OSError as exc:
        raise CertificateError(f"cannot read the CA file {ca_file}: {exc.strerror}") from None
    chain = offered.info.get("certificate")
    if not isinstance(chain, str) or not chain:
        raise CertificateError(
            f"server {spec} offers no certificate, so it cannot be checked against the CA file {ca_file}; "
            "its administrator can make one with `ssd init` (or connect without a CA file to use known hosts)"
        )
    verify_server_certificate(chain, ca_pem, spec.host, offered.public_key)
    return offered.public_key


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

"""The plain-TCP key port: the right request gets the key, anything else is cut off unanswered and unread."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import zmq

from ssd.broker.keyport import KEY_HEADER, KEY_REQUEST, KeyServer, parse_header
from ssd.client.hostspec import HostSpec
from ssd.client.verify import fetch_server_key

PUBLIC = zmq.curve_keypair()[0]
INFO = {"name": "testhost", "fingerprint": "SHA256:abc"}


@asynccontextmanager
async def key_server(*, max_per_address: int = 32, deadline: float = 5.0) -> AsyncIterator[int]:
    """A KeyServer on a random loopback port for the block; yields the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    task = asyncio.create_task(
        KeyServer(PUBLIC, INFO, max_per_address=max_per_address, deadline=deadline).serve(listener)
    )
    try:
        yield port
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        listener.close()


async def exchange(port: int, send: bytes) -> bytes:
    """Send *send*, then read until the server closes; what it said (a reset counts as nothing more)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = b""
    try:
        writer.write(send)
        await writer.drain()
        while chunk := await asyncio.wait_for(reader.read(65536), 10):
            received += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        writer.close()
    return received


def test_a_key_request_gets_the_key_and_the_info() -> None:
    """KEY_REQUEST is answered with the header (magic, key, length) and the JSON info, then the server closes."""

    async def body() -> None:
        async with key_server() as port:
            reply = await exchange(port, KEY_REQUEST)
        header = parse_header(reply[: KEY_HEADER.size])
        assert header == (PUBLIC, len(reply) - KEY_HEADER.size)
        assert json.loads(reply[KEY_HEADER.size :]) == INFO

    asyncio.run(body())


def test_the_client_reads_the_offered_key() -> None:
    """ssd.client.verify.fetch_server_key speaks the same protocol."""

    async def body() -> None:
        async with key_server() as port:
            offered = await fetch_server_key(HostSpec("127.0.0.1", port - 2), timeout=5)
        assert offered is not None
        assert (offered.public_key, offered.info) == (PUBLIC, INFO)

    asyncio.run(body())


def test_garbage_and_old_zeromq_requests_are_not_answered() -> None:
    """A wrong request, the old ZeroMQ greeting, or an HTTP request: the connection ends with nothing said."""

    async def body() -> None:
        async with key_server() as port:
            for garbage in (b"SSDKEY1?\n", b"\xff" + b"\x00" * 8 + b"\x7f\x03\x00NULL", b"GET / HTTP/1.0\r\n\r\n"):
                assert await exchange(port, garbage) == b""

    asyncio.run(body())


def test_an_endless_stream_is_cut_off_unread() -> None:
    """8 MB of junk: the server stops reading and resets; sending fails long before it is all accepted."""

    async def body() -> None:
        async with key_server() as port:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            cut = False
            try:
                for _ in range(128):
                    writer.write(b"\x01\x02ab" * 16384)
                    await asyncio.wait_for(writer.drain(), 10)
            except (ConnectionResetError, BrokenPipeError):
                cut = True
            finally:
                writer.close()
            assert cut, "the key port read 8 MB of junk"

    asyncio.run(body())


def test_a_silent_client_is_dropped_at_the_deadline() -> None:
    """A client that sends nothing (slowloris) is cut off after the deadline, and others are still served."""

    async def body() -> None:
        async with key_server(deadline=0.3) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                assert await asyncio.wait_for(reader.read(), 10) == b""
            except ConnectionResetError:
                pass
            finally:
                writer.close()
            assert await exchange(port, KEY_REQUEST)

    asyncio.run(body())


def test_connections_beyond_the_per_address_cap_are_refused() -> None:
    """With 2 held per address, a third is cut at once; once one ends, a request is answered again."""

    async def body() -> None:
        async with key_server(max_per_address=2, deadline=30) as port:
            held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
            third = await exchange(port, b"")
            for _, writer in held:
                writer.close()
            assert third == b""
            reply = b""
            for _ in range(100):  # the server notices the closed ones as soon as it reads their EOF
                reply = await exchange(port, KEY_REQUEST)
                if reply:
                    break
                await asyncio.sleep(0.05)
            assert reply

    asyncio.run(body())

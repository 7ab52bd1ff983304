"""Another local user's attack on a victim's kernel, run as that other user (B) by test_kernel_isolation.py.

Given the victim's uid and the kernel's socket paths (as /proc/net/unix shows them to anyone), B:

- connects to each ipc socket path (the errno it gets, or "connected");
- finds every TCP socket listening under the victim's uid in /proc/net/tcp and tcp6 (as anyone can), reads
  the ZMTP greeting of each (the socket type a NULL peer announces, or "refused"), and
  subscribes to all of them and to the ipc paths with a SUB socket;

prints one JSON line {"ipc": ..., "tcp": ...} and listens until a line "stop" arrives on stdin (the victim
printed a marker meanwhile); then prints {"received": [...every frame received...]}.
"""

from __future__ import annotations

import errno
import json
import select
import socket
import struct
import sys
from typing import Any

import zmq

LISTEN = "0A"
GREETING = b"\xff" + b"\0" * 8 + b"\x7f" + bytes([3, 0]) + b"NULL".ljust(20, b"\0") + b"\0" * 32


def listeners(uid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket listening under *uid*."""
    found = []
    for table, family in (("/proc/net/tcp", "4"), ("/proc/net/tcp6", "6")):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if fields[3] == LISTEN and int(fields[7]) == uid:
                    port = int(fields[1].rsplit(":", 1)[1], 16)
                    found.append(("127.0.0.1" if family == "4" else "::1", port))
    return found


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def zmtp_peer(address: str, port: int) -> str:
    """What a ZMTP peer says to an unauthenticated client: its Socket-Type (it took the NULL mechanism),
    "refused" (it closed the connection instead: CURVE), or why there was no answer."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect((address, port))
            sock.sendall(GREETING)
            try:
                greeting = _read(sock, 64)
            except ConnectionError:
                return "refused"
            if greeting[0] != 0xFF or greeting[9] != 0x7F:
                return "not-zmtp"
            flags = _read(sock, 1)[0]
            size = struct.unpack(">Q", _read(sock, 8))[0] if flags & 0x02 else _read(sock, 1)[0]
            return _socket_type(_read(sock, size))
    except (OSError, ConnectionError) as exc:
        return f"error: {exc}"


def _socket_type(command: bytes) -> str:
    """The Socket-Type property of a READY command."""
    at = 1 + command[0]  # past the command name
    while at < len(command):
        name_size = command[at]
        name = command[at + 1 : at + 1 + name_size].decode()
        at += 1 + name_size
        value_size = struct.unpack(">I", command[at : at + 4])[0]
        value = command[at + 4 : at + 4 + value_size].decode()
        at += 4 + value_size
        if name == "Socket-Type":
            return value
    return "no-socket-type"


def ipc_connect(path: str) -> str:
    """What connecting to a Unix socket at *path* gives: "connected" or the errno's name."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except OSError as exc:
            return errno.errorcode.get(exc.errno or 0, str(exc))
    return "connected"


def main(uid: int, ipc_paths: list[str]) -> None:
    """Attack, report, listen until told to stop, report what was received."""
    ctx = zmq.Context()
    found = listeners(uid)
    subscriber = ctx.socket(zmq.SUB)
    subscriber.linger = 0
    subscriber.ipv6 = True
    subscriber.subscribe(b"")
    for address, port in found:
        subscriber.connect(f"tcp://[{address}]:{port}" if ":" in address else f"tcp://{address}:{port}")
    for path in ipc_paths:
        subscriber.connect(f"ipc://{path}")
    # The probes after the SUB's connects: each is a round trip, time for the subscriptions to arrive.
    report: dict[str, Any] = {
        "ipc": {path: ipc_connect(path) for path in ipc_paths},
        "tcp": {str(port): zmtp_peer(address, port) for address, port in found},
    }
    print(json.dumps(report), flush=True)
    received: list[str] = []
    while True:
        if subscriber.poll(100):
            received += [frame.decode(errors="replace") for frame in subscriber.recv_multipart()]
            continue
        ready, _, _ = select.select([sys.stdin], [], [], 0)
        if ready and sys.stdin.readline().strip() in ("stop", ""):
            break
    while subscriber.poll(0):
        received += [frame.decode(errors="replace") for frame in subscriber.recv_multipart()]
    print(json.dumps({"received": received}), flush=True)
    subscriber.close()
    ctx.term()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:])

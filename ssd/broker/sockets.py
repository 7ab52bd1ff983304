"""The broker's sockets and ports: the public listeners, the loopback ZeroMQ sockets, the runtime file.

The broker binds and holds the public listening sockets (control, events, key)
and hands control's and events' to each edge it starts (libzmq's
``ZMQ_USE_FD``), so the ports stay the same across an edge restart and
connections that arrive meanwhile wait in the kernel's backlog instead of
being refused. It also keeps privileged ports possible for an edge that runs
unprivileged. The worker backend and the edge's link are CURVE ROUTERs on
127.0.0.1, on ports the system picks. ``STATE_DIR/daemon.json`` tells local
tools (and tests) the ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from ssd.broker.policy import WORKER_DOMAIN
from ssd.broker.registry import MAX_CAPACITY
from ssd.config import ServerConfig
from ssd.edge.link import EDGE_DOMAIN
from ssd.files import write_atomic
from ssd.workers import wire as worker_wire

__all__ = [
    "LINGER_MS",
    "PUBLIC",
    "RUNTIME_FILE",
    "backend_socket",
    "bind_loopback",
    "close_listeners",
    "curve_server_socket",
    "endpoint",
    "link_socket",
    "listen",
    "listen_public",
    "remove_runtime_file",
    "write_runtime_file",
]

PUBLIC = ("control", "events", "key")  # at port, port + 1, port + 2 when chosen at random
LINGER_MS = 200  # time for replies already queued to leave on shutdown
RUNTIME_FILE = "daemon.json"
LINK_HWM = 10_000
# Messages queued per worker connection each way; a worker's replies and events wait (never dropped) when it is
# reached, heartbeats to a worker that does not read are dropped (it is then declared silent).
BACKEND_HWM = 64
_PORT_TRIES = 50
_BACKLOG = 128


def listen(address: str, port: int) -> socket.socket:
    """A listening TCP socket on *address* (``*`` = all, IPv6 and IPv4) and *port* (0 = any)."""
    wildcard = address == "*"
    family = socket.AF_INET6 if wildcard or ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if wildcard:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::" if wildcard else address, port))
        sock.listen(_BACKLOG)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot bind {address}:{port}: {exc.strerror}") from None
    return sock


def listen_public(address: str, ports: tuple[int, int, int]) -> dict[str, socket.socket]:
    """Listen on the control, events and key *ports*; with control port 0, on three free consecutive ports."""
    if ports[0]:
        return _listen_all(address, ports)
    for _ in range(_PORT_TRIES):
        base = random.randint(20000, 60000)  # noqa: S311 (not a secret)
        with contextlib.suppress(OSError):
            return _listen_all(address, (base, base + 1, base + 2))
    raise OSError(f"found no three free consecutive ports on {address}")


def _listen_all(address: str, ports: tuple[int, int, int]) -> dict[str, socket.socket]:
    bound: dict[str, socket.socket] = {}
    try:
        for name, port in zip(PUBLIC, ports, strict=True):
            bound[name] = listen(address, port)
    except OSError:
        for sock in bound.values():
            sock.close()
        raise
    return bound


def endpoint(address: str, port: int) -> str:
    """The ZeroMQ endpoint of a listening socket (libzmq's bookkeeping; USE_FD ignores the address)."""
    host = f"[{address}]" if ":" in address else address
    return f"tcp://{host}:{port}"


def curve_server_socket(
    ctx: zmq.asyncio.Context, kind: int, domain: str, secret: bytes, server: ServerConfig
) -> zmq.asyncio.Socket:
    """A CURVE server socket of *kind* whose handshakes ZAP judges in *domain*, within the server's limits."""
    sock = ctx.socket(kind)
    sock.linger = LINGER_MS
    sock.sndhwm = sock.rcvhwm = server.hwm
    sock.maxmsgsize = server.max_message_size
    sock.curve_server = True
    sock.curve_secretkey = secret
    sock.zap_domain = domain.encode()
    return sock


def backend_socket(ctx: zmq.asyncio.Context, secret: bytes, server: ServerConfig) -> zmq.asyncio.Socket:
    """The workers' ROUTER (not bound yet: the flood guard must see every connection)."""
    backend = curve_server_socket(ctx, zmq.ROUTER, WORKER_DOMAIN, secret, server)
    # A per-user worker is its user's (DESIGN §1): its frames are bounded (a larger one drops its
    # connection), and so is what queues per connection; a full queue only slows that worker down.
    backend.maxmsgsize = worker_wire.MAX_FRAME
    # Towards a worker a ROUTER drops what does not fit, silently: the queue must hold every request the
    # registry may assign it (its capacity, at most MAX_CAPACITY), plus heartbeats and commands.
    backend.sndhwm = MAX_CAPACITY + BACKEND_HWM
    backend.rcvhwm = BACKEND_HWM
    return backend


def link_socket(ctx: zmq.asyncio.Context, secret: bytes, server: ServerConfig) -> zmq.asyncio.Socket:
    """The edge's link ROUTER (not bound yet)."""
    link = curve_server_socket(ctx, zmq.ROUTER, EDGE_DOMAIN, secret, server)
    # The edge forwards client frames, each within max_message_size, so the link's limit is the same.
    link.sndhwm = link.rcvhwm = LINK_HWM
    return link


def close_listeners(listeners: dict[str, socket.socket]) -> None:
    """Close the public listening sockets (on shutdown)."""
    for listener in listeners.values():
        listener.close()


def bind_loopback(sock: zmq.asyncio.Socket) -> int:
    """Bind *sock* to a port of 127.0.0.1 the system picks; return the port."""
    try:
        sock.bind("tcp://127.0.0.1:*")
    except zmq.ZMQError as exc:
        raise OSError(exc.errno, f"cannot bind 127.0.0.1: {exc.strerror}") from None
    return int(sock.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])


def write_runtime_file(state_dir: Path, facts: dict[str, Any], ports: dict[str, int]) -> None:
    """Tell local tools (and tests) the bound ports: ``STATE_DIR/daemon.json``, with this pid."""
    info = {"pid": os.getpid(), **facts, **{f"{name}_port": port for name, port in ports.items()}}
    path = state_dir / RUNTIME_FILE
    write_atomic(path, json.dumps(info, indent=2) + "\n", mode=0o644)


def remove_runtime_file(state_dir: Path) -> None:
    """The daemon stopped: its ports are no longer served."""
    with contextlib.suppress(FileNotFoundError):
        (state_dir / RUNTIME_FILE).unlink()

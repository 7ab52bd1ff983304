"""The public TCP ports, bound by the broker itself: control and events (served by the edge), key (served here).

The broker binds and holds the listening sockets and hands control's and
events' to each edge it starts (libzmq's ``ZMQ_USE_FD``), so the ports stay
the same across an edge restart and connections that arrive meanwhile wait in
the kernel's backlog instead of being refused. It also keeps privileged ports
possible for an edge that runs unprivileged.
"""

from __future__ import annotations

import contextlib
import random
import socket

__all__ = ["PUBLIC", "endpoint", "listen", "listen_public"]

PUBLIC = ("control", "events", "key")  # at port, port + 1, port + 2 when chosen at random
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

"""All the relays of one kernel worker: their context, their ZAP gate, and the one thread forwarding for all.

The relay loop's thread owns every relay socket, monitors included: asyncio watches none of them (a
monitor's descriptor closed while still registered in asyncio's selector once left the next pipe of that
number never watched: the "squeue did not answer" of bench_slurm.py after a local kernel's relay closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections.abc import Awaitable, Callable
from typing import Any

import zmq

from ssd.kernels.connection import WILDCARDS
from ssd.kernels.record import KernelRecord
from ssd.kernels.relay import Relay, RelayGate
from ssd.kernels.relayloop import RelayLoop

__all__ = ["DEFAULT_MAX_SOCKETS", "RelayHost", "max_sockets", "relay_context"]

# libzmq's default ZMQ_MAX_SOCKETS: never go below it.
DEFAULT_MAX_SOCKETS = 1023


def max_sockets(soft_nofile: int, socket_limit: int) -> int:
    """The socket table for a process whose soft descriptor limit is *soft_nofile*: as many sockets as it may
    hold descriptors (every libzmq socket holds at least one, its mailbox, so descriptors run out first),
    within libzmq's own *socket_limit* and never below libzmq's default."""
    wanted = socket_limit if soft_nofile == resource.RLIM_INFINITY else soft_nofile
    return max(DEFAULT_MAX_SOCKETS, min(wanted, socket_limit))


def relay_context() -> zmq.Context[Any]:
    """A context for many relays (12 libzmq sockets each, 22 with a proxy thread per channel): with libzmq's
    default of 1023 sockets it held 46 threaded relays, whatever the descriptor limit (docs/scale.md)."""
    ctx: zmq.Context[Any] = zmq.Context()
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    ctx.set(zmq.MAX_SOCKETS, max_sockets(soft, ctx.get(zmq.SOCKET_LIMIT)))  # before the first socket: sized once
    return ctx


class RelayHost:
    """Opens and closes relays on *ip*; one libzmq context, one ZAP thread and one relay loop for all of them."""

    def __init__(self, ip: str) -> None:
        self.ip = ip
        self.ctx = relay_context()
        self.gate = RelayGate(self.ctx)
        self.loop = RelayLoop(self.ctx)
        self._relays: dict[str, Relay] = {}

    def open(self, record: KernelRecord, *, strict: bool = False) -> Relay:
        """Start the relay of a ready kernel (the worker's event loop calls it)."""
        assert record.relay is not None
        self.close(record.kernel_id)
        domain = f"k{record.kernel_id}"
        keys = {k: record.relay[k] for k in ("curve_publickey", "curve_secretkey")}
        self.gate.admit(domain, keys["curve_publickey"])
        ports = record.relay.get("ports")
        relay = Relay(self.loop, record.connection, self.ip, keys, domain=domain, ports=ports, strict=strict)
        try:
            relay.start()
        except BaseException:
            self.gate.forget(domain)
            raise
        self._relays[record.kernel_id] = relay
        return relay

    def get(self, kernel_id: str) -> Relay | None:
        """The running relay of a kernel, if any."""
        return self._relays.get(kernel_id)

    async def iopub_flowing(self, record: KernelRecord, ask: Callable[[], Awaitable[object]], timeout: float) -> bool:
        """Whether the kernel's iopub reaches clients through the relay: subscribe at the relay's front and *ask*
        the kernel something (a kernel_info_request over the worker's own link) until a message arrives.

        After a restart in place the relay reconnects to the new process; output the kernel publishes before
        the relay's subscription reached it is lost, so a restart is answered only once it has (what Jupyter
        Server's nudge does for a new websocket, done here for clients that stay connected across a restart).
        """
        relay = self._relays.get(record.kernel_id)
        if relay is None or record.relay is None:
            return False
        sock = zmq.asyncio.Context.shadow(self.ctx).socket(zmq.SUB)
        sock.linger = 0
        sock.curve_serverkey = sock.curve_publickey = str(record.relay["curve_publickey"]).encode()
        sock.curve_secretkey = str(record.relay["curve_secretkey"]).encode()
        sock.subscribe(b"")
        host = "127.0.0.1" if self.ip in WILDCARDS else self.ip
        sock.connect(f"tcp://{_bracketed(host)}:{relay.ports['iopub']}")
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                with contextlib.suppress(Exception):  # a silent or busy kernel: ask again
                    await asyncio.wait_for(ask(), min(left, 1.0))
                if await sock.poll(min(deadline - time.monotonic(), 0.2) * 1000 if left > 0 else 0):
                    return True
            return False
        finally:
            sock.close(linger=0)

    def close(self, kernel_id: str) -> None:
        """Stop a kernel's relay and shut its door."""
        relay = self._relays.pop(kernel_id, None)
        if relay is not None:
            relay.stop()
            self.gate.forget(relay.domain)

    def stop(self) -> None:
        """Stop every relay, the loop, the gate and the context."""
        for kernel_id in list(self._relays):
            self.close(kernel_id)
        self.loop.stop()
        self.gate.stop()
        self.ctx.term()


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host

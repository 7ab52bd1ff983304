"""All the relays of one kernel worker: their context, their ZAP gate, their monitors.

The event loop watches each relay's monitor socket through its file descriptor, and stops watching it
before the relay closes the socket: a descriptor closed while still registered stays in asyncio's selector,
and the next pipe or pidfd given that number is then silently never watched (a subprocess's output never
read: the "squeue did not answer" of bench_slurm.py after a local kernel's relay had closed).
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
    """A context for many relays (22 libzmq sockets each): with libzmq's default of 1023 sockets it held 46,
    whatever the descriptor limit (docs/scale.md)."""
    ctx: zmq.Context[Any] = zmq.Context()
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    ctx.set(zmq.MAX_SOCKETS, max_sockets(soft, ctx.get(zmq.SOCKET_LIMIT)))  # before the first socket: sized once
    return ctx


class RelayHost:
    """Opens and closes relays on *ip*; one libzmq context and one ZAP thread for all of them."""

    def __init__(self, ip: str) -> None:
        self.ip = ip
        self.ctx = relay_context()
        self.gate = RelayGate(self.ctx)
        self._relays: dict[str, Relay] = {}
        self._watchers: dict[str, _MonitorWatch] = {}

    def open(self, record: KernelRecord, *, strict: bool = False) -> Relay:
        """Start the relay of a ready kernel (event loop only: it follows the relay's monitor)."""
        assert record.relay is not None
        self.close(record.kernel_id)
        domain = f"k{record.kernel_id}"
        keys = {k: record.relay[k] for k in ("curve_publickey", "curve_secretkey")}
        self.gate.admit(domain, keys["curve_publickey"])
        ports = record.relay.get("ports")
        relay = Relay(self.ctx, record.connection, self.ip, keys, domain=domain, ports=ports, strict=strict)
        try:
            relay.start()
        except BaseException:
            self.gate.forget(domain)
            raise
        self._relays[record.kernel_id] = relay
        if relay.monitor is not None:
            self._watchers[record.kernel_id] = _MonitorWatch(relay, relay.monitor)
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
        watcher = self._watchers.pop(kernel_id, None)
        if watcher is not None:
            watcher.stop()  # before relay.stop() closes the monitor socket
        relay = self._relays.pop(kernel_id, None)
        if relay is not None:
            relay.stop()
            self.gate.forget(relay.domain)

    def stop(self) -> None:
        """Stop every relay, the gate and the context."""
        for kernel_id in list(self._relays):
            self.close(kernel_id)
        self.gate.stop()
        self.ctx.term()


class _MonitorWatch:
    """Feeds a relay its monitor's events (connects and disconnects of shell clients) from the event loop."""

    def __init__(self, relay: Relay, monitor: zmq.Socket[Any]) -> None:
        self.relay = relay
        self.monitor = monitor
        self.fd: int = monitor.FD
        self._loop = asyncio.get_running_loop()
        self._stopped = False
        self._loop.add_reader(self.fd, self._drain)
        self._loop.call_soon(self._drain)  # events queued before the reader was added

    def _drain(self) -> None:
        # libzmq's FD only says that something changed: read every queued event each time it fires.
        if self._stopped:
            return
        with contextlib.suppress(zmq.ZMQError):
            while self.monitor.poll(0):
                self.relay.note_monitor_event(self.monitor.recv_multipart(zmq.NOBLOCK))

    def stop(self) -> None:
        """Stop watching, while the descriptor is still the monitor's (idempotent)."""
        self._stopped = True
        self._loop.remove_reader(self.fd)


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host

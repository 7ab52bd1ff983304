"""All the relays of one kernel worker: their context, their ZAP gate, their monitors.

The event loop watches each relay's monitor socket through its file descriptor, and stops watching it
before the relay closes the socket: a descriptor closed while still registered stays in asyncio's selector,
and the next pipe or pidfd given that number is then silently never watched (a subprocess's output never
read: the "squeue did not answer" of bench_slurm.py after a local kernel's relay had closed).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import zmq

from ssd.kernels.record import KernelRecord
from ssd.kernels.relay import Relay, RelayGate

__all__ = ["RelayHost"]


class RelayHost:
    """Opens and closes relays on *ip*; one libzmq context and one ZAP thread for all of them."""

    def __init__(self, ip: str) -> None:
        self.ip = ip
        self.ctx: zmq.Context[Any] = zmq.Context()
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

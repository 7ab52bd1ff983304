"""The relay on its own, in this process, with real sockets on loopback: started and stopped many times
in a row (as kernels come and go in one worker), it never trips over its own earlier sockets."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import zmq
from support.eventually import eventually

from ssd.kernels.record import KernelRecord
from ssd.kernels.relay import CHANNELS, Relay, RelayGate, new_relay_keys
from ssd.kernels.relayhost import RelayHost
from ssd.kernels.relayloop import RelayLoop


def _kernel_info() -> dict[str, Any]:
    """Connection info of a kernel that is not running (the relay only connects; nothing needs to answer)."""
    info: dict[str, Any] = {"ip": "127.0.0.1", "key": "k", "signature_scheme": "hmac-sha256", "kernel_name": ""}
    info.update({f"{channel}_port": 1 for channel in CHANNELS})
    return info


def test_relays_start_and_stop_many_times_in_one_context() -> None:
    """100 relays one after the other: each binds five fresh ports and stops cleanly."""
    ctx: zmq.Context[Any] = zmq.Context()
    gate = RelayGate(ctx)
    loop = RelayLoop(ctx)
    try:
        for n in range(100):
            keys = new_relay_keys()
            gate.admit(f"k{n}", keys["curve_publickey"])
            relay = Relay(loop, _kernel_info(), "127.0.0.1", keys, domain=f"k{n}")
            ports = relay.start()
            assert sorted(ports) == sorted(CHANNELS)
            assert len(set(ports.values())) == len(CHANNELS)
            relay.stop()
            gate.forget(f"k{n}")
    finally:
        loop.stop()
        gate.stop()
        ctx.term()


def _record(kernel_id: str) -> KernelRecord:
    """A record with a relay for a kernel that is not running."""
    fields: dict[str, Any] = {"user": "u", "name": "n", "env": "/", "env_name": "e", "kind": "ipykernel"}
    fields |= {"pid": 1, "start_ticks": 0, "started": 0.0, "connection_file": "", "log_file": "", "cwd": "/"}
    return KernelRecord(
        kernel_id=kernel_id, connection=_kernel_info(), argv=[], environ={}, relay=new_relay_keys(), **fields
    )


async def _until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Let the event loop run until *check* holds; fail naming *what* after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        await asyncio.sleep(0.02)


def test_a_closed_relay_leaves_no_descriptor_watched_in_the_event_loop() -> None:
    """After a relay closes, a new pipe that gets its monitor's descriptor number is watched for real.

    (A monitor closed while still registered left its number in asyncio's selector: a later subprocess's
    stderr pipe of that number was never read, and squeue "did not answer" in bench_slurm.py.)
    """

    async def scenario() -> None:
        host = RelayHost("127.0.0.1")
        try:
            host.open(_record("k1"))
            relay = host.get("k1")
            assert relay is not None
            assert relay.monitor is not None
            fd = relay.monitor.FD
            # The monitor is followed: a client's TCP connection to the shell port is counted, and its close.
            with socket.create_connection(("127.0.0.1", relay.ports["shell"])):
                await _until(lambda: relay.clients == 1, "the shell client counted")
            await _until(lambda: relay.clients == 0, "the shell client's disconnect counted")
            read, write = os.pipe()  # made while fd is taken: neither end can get its number
            host.close("k1")
            # libzmq's reaper thread closes the monitor's descriptor a moment after close().
            eventually(lambda: not os.path.exists(f"/proc/self/fd/{fd}"), what=f"descriptor {fd} closed")
            os.dup2(read, fd)
            os.close(read)
            readable = asyncio.Event()
            asyncio.get_running_loop().add_reader(fd, readable.set)
            try:
                os.write(write, b"x")
                await asyncio.wait_for(readable.wait(), 10)
            finally:
                asyncio.get_running_loop().remove_reader(fd)
                os.close(fd)
                os.close(write)
        finally:
            host.stop()

    asyncio.run(scenario())

"""The relay on its own, in this process, with real sockets on loopback: started and stopped many times
in a row (as kernels come and go in one worker), it never trips over its own earlier sockets."""

from __future__ import annotations

from typing import Any

import zmq

from ssd.kernels.relay import CHANNELS, Relay, RelayGate, new_relay_keys


def _kernel_info() -> dict[str, Any]:
    """Connection info of a kernel that is not running (the relay only connects; nothing needs to answer)."""
    info: dict[str, Any] = {"ip": "127.0.0.1", "key": "k", "signature_scheme": "hmac-sha256", "kernel_name": ""}
    info.update({f"{channel}_port": 1 for channel in CHANNELS})
    return info


def test_relays_start_and_stop_many_times_in_one_context() -> None:
    """100 relays one after the other: each binds five fresh ports and stops cleanly."""
    ctx: zmq.Context[Any] = zmq.Context()
    gate = RelayGate(ctx)
    try:
        for n in range(100):
            keys = new_relay_keys()
            gate.admit(f"k{n}", keys["curve_publickey"])
            relay = Relay(ctx, _kernel_info(), "127.0.0.1", keys, domain=f"k{n}")
            ports = relay.start()
            assert sorted(ports) == sorted(CHANNELS)
            assert len(set(ports.values())) == len(CHANNELS)
            relay.stop()
            gate.forget(f"k{n}")
    finally:
        gate.stop()
        ctx.term()

"""The relay as it was before one loop served all (issue 17): libzmq's proxy in a thread per channel.

The baseline of bench_relay.py and bench_scale.py, measured in the same run as the relay ssd ships. Run as
``python benchmarks/threaded_relay.py`` it reads a kernel's connection info (JSON) on stdin, relays that
kernel, prints the relay's connection info (one JSON line) and serves until stdin closes.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import zmq

from ssd.kernels.connection import relay_connection_info
from ssd.kernels.proxy import ChannelProxy, stop_proxies
from ssd.kernels.relay import CHANNELS, Relay, RelayGate, new_relay_keys
from ssd.kernels.relayhost import relay_context
from ssd.kernels.relayloop import RelayLoop

__all__ = ["ThreadedRelay", "main"]


class ThreadedRelay(Relay):
    """The same sockets as ssd's relay, each channel forwarded by its own ChannelProxy thread (the loop unused)."""

    identity = b"ssd-relay-baseline"  # beside the worker's relay of the same kernel

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._proxies: list[ChannelProxy] = []

    def start(self) -> dict[str, int]:
        """Bind, connect and start a proxy thread per channel."""
        pairs: list[tuple[zmq.Socket[Any], zmq.Socket[Any]]] = []
        for channel in CHANNELS:
            self._pair(channel, pairs)
        self._proxies = [ChannelProxy(self.ctx, c, f, b) for c, (f, b) in zip(CHANNELS, pairs, strict=True)]
        for proxy in self._proxies:
            proxy.start()
        return dict(self.ports)

    def stop(self) -> None:
        """Stop the threads (which close the sockets) and the monitor."""
        stop_proxies(self._proxies)
        if self.monitor is not None:
            self.monitor.close(linger=0)
            self.monitor = None


def main() -> int:
    """Relay the kernel whose connection info comes on stdin until stdin closes."""
    kernel = json.loads(sys.stdin.readline())
    ctx = relay_context()
    gate, loop = RelayGate(ctx), RelayLoop(ctx)
    keys = new_relay_keys()
    gate.admit("baseline", keys["curve_publickey"])
    relay = ThreadedRelay(loop, kernel, "127.0.0.1", keys, domain="baseline")
    try:
        relay.start()
        print(json.dumps(relay_connection_info(kernel, "127.0.0.1", relay.ports, keys)), flush=True)
        sys.stdin.read()
    finally:
        relay.stop()
        loop.stop()
        gate.stop()
        ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())

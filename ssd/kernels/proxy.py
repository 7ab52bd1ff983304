"""A kernel channel's socket pair (relay and tunnel) and libzmq's own proxy in a thread (the tunnel's).

The tunnel (one kernel per process) keeps ``ChannelProxy``: ``zmq.proxy_steerable``
moves every message in C; Python only starts the thread and later sends
TERMINATE on the steering socket. A kernel worker's relays share one
``ssd.kernels.relayloop.RelayLoop`` thread instead.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from typing import Any

import zmq

__all__ = ["QUEUE_HWM", "ChannelProxy", "channel_pair", "monitor_socket", "stop_proxies"]

log = logging.getLogger(__name__)

# Messages queued per socket (libzmq's default): an iopub subscriber that falls this far behind loses
# messages, exactly as it would on the kernel's own PUB socket, instead of the worker buffering without bound.
QUEUE_HWM = 1000

_NAMES = itertools.count(1)


def monitor_socket(ctx: zmq.Context[Any], sock: zmq.Socket[Any], events: int) -> zmq.Socket[Any]:
    """A PAIR socket receiving *sock*'s monitor events, under a fresh inproc name (pyzmq's own
    get_monitor_socket names it after the file descriptor, which a new socket may get while libzmq
    still holds the old name: "Address already in use")."""
    address = f"inproc://ssd-monitor-{next(_NAMES)}"
    sock.monitor(address, events)
    monitor: zmq.Socket[Any] = ctx.socket(zmq.PAIR)
    monitor.linger = 0
    monitor.connect(address)
    return monitor


def channel_pair(ctx: zmq.Context[Any], channel: str) -> tuple[zmq.Socket[Any], zmq.Socket[Any]]:
    """The two ends of one forwarded channel: the front (ROUTER; XPUB for iopub) and the back (DEALER; XSUB)."""
    front: zmq.Socket[Any] = ctx.socket(zmq.XPUB if channel == "iopub" else zmq.ROUTER)
    try:
        back: zmq.Socket[Any] = ctx.socket(zmq.XSUB if channel == "iopub" else zmq.DEALER)
    except BaseException:
        front.close(linger=0)
        raise
    for sock in (front, back):
        sock.linger = 0
        sock.sndhwm = sock.rcvhwm = QUEUE_HWM
    if channel == "iopub":
        front.xpub_verbose = True  # every new subscription reaches the kernel (its iopub welcome)
        back.rcvhwm = 0  # take all the kernel sends; the front drops for a slow client, as a kernel's PUB does
    return front, back


def stop_proxies(proxies: list[ChannelProxy]) -> None:
    """Stop every proxy in *proxies* (their threads close the sockets) and empty the list."""
    for proxy in proxies:
        proxy.stop()
    proxies.clear()


class ChannelProxy:
    """One channel: a front socket, a back socket, libzmq's proxy between them in a thread."""

    def __init__(self, ctx: zmq.Context[Any], channel: str, front: zmq.Socket[Any], back: zmq.Socket[Any]) -> None:
        self.channel = channel
        self.front = front
        self.back = back
        # A fresh name each time: libzmq releases a closed socket's inproc name later, not at close().
        address = f"inproc://ssd-proxy-{next(_NAMES)}"
        self._control = ctx.socket(zmq.PAIR)
        try:  # out of sockets or descriptors: leave none open, or the context never terminates
            self._steer = ctx.socket(zmq.PAIR)
        except BaseException:
            self._control.close(linger=0)
            raise
        for sock in (self._control, self._steer):
            sock.linger = 0
        self._control.bind(address)
        self._steer.connect(address)
        self._thread = threading.Thread(target=self._run, name=f"proxy-{channel}", daemon=True)

    def start(self) -> None:
        """Run the proxy in its thread."""
        self._thread.start()

    def _run(self) -> None:
        try:
            zmq.proxy_steerable(self.front, self.back, None, self._steer)
        except zmq.ZMQError as exc:
            if exc.errno != zmq.ETERM:
                log.error("%s proxy stopped: %s", self.channel, exc)
        finally:
            self._close()

    def _close(self) -> None:
        # A monitored socket closed with its monitor still attached is never freed by libzmq
        # (each leaks its slots until the context runs out of sockets): detach the monitor first.
        for sock in (self.front, self.back):
            with contextlib.suppress(zmq.ZMQError):
                sock.disable_monitor()
        for sock in (self.front, self.back, self._steer):
            sock.close(linger=0)

    def stop(self) -> None:
        """Terminate the proxy and wait for its thread (which closes the sockets); or close them, unstarted."""
        if self._thread.is_alive():
            with contextlib.suppress(zmq.ZMQError):
                self._control.send(b"TERMINATE")
            self._thread.join(timeout=5)
        elif self._thread.ident is None:
            self._close()
        self._control.close(linger=0)

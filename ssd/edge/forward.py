"""The edge's forwarding: client messages to the broker, the broker's replies and events out, in one thread.

Blocking calls on a thread of its own cost a fraction of an event-loop hop
per message (each request crosses the edge twice), and nothing else in the
edge needs the loop's time. The thread owns the three sockets from start()
on; stop() wakes it through an inproc pair.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from ssd.broker.quota import LogThrottle
from ssd.edge.link import CLIENT, MAX_FORWARDED_FRAMES, PUBLISH, REPLY, TAG
from ssd.protocol import Wire
from ssd.topics import HELLO, SUBSCRIBED

__all__ = ["Forwarder"]

log = logging.getLogger(__name__)

# Messages moved per socket before the poller is asked again (fairness between the two directions).
_BATCH = 64
# SUBSCRIBED answers per second at most: whoever subscribes to every topic receives them all, so a client
# subscribing in a loop must not make the edge flood them (past the cap a subscriber waits for its timeout).
_WELCOMES_PER_SECOND = 200
_SUBSCRIBE = 1  # the first byte of an XPUB subscription message (0: unsubscribe)


class Forwarder(threading.Thread):
    """Moves frames between the public control/events sockets and the broker's link."""

    def __init__(
        self,
        ctx: zmq.Context[Any],
        control: zmq.Socket[Any],
        events: zmq.Socket[Any],
        link: zmq.Socket[Any],
        *,
        on_end: Callable[[BaseException | None], None],
    ) -> None:
        super().__init__(name="ssd-edge-forward", daemon=True)
        # Sync views of the (asyncio) sockets: from start() on, only this thread uses them.
        self._control: zmq.Socket[Any] = zmq.Socket.shadow(control.underlying)
        self._events: zmq.Socket[Any] = zmq.Socket.shadow(events.underlying)
        self._link: zmq.Socket[Any] = zmq.Socket.shadow(link.underlying)
        address = f"inproc://ssd-edge-forward-{id(self)}"
        self._wake_out = ctx.socket(zmq.PAIR)
        self._wake_out.linger = 0
        self._wake_out.bind(address)
        self._wake_in = ctx.socket(zmq.PAIR)
        self._wake_in.linger = 0
        self._wake_in.connect(address)
        self._on_end = on_end
        self._drops = LogThrottle()
        self._wire = Wire()
        self._welcomes: tuple[int, int] = (0, 0)  # the current second and the SUBSCRIBED sent in it

    def stop(self) -> None:
        """Wake the thread, wait for it to end, close the wake pair."""
        if self.is_alive():
            self._wake_out.send(b"")
            self.join()
        self._wake_out.close()
        self._wake_in.close()

    def run(self) -> None:
        """The thread: poll, forward in batches, until woken."""
        error: BaseException | None = None
        try:
            self._loop()
        except Exception as exc:  # reported to the edge, which then exits non-zero and is restarted
            error = exc
        self._on_end(error)

    def _loop(self) -> None:
        poller = zmq.Poller()
        for sock in (self._control, self._link, self._events, self._wake_in):
            poller.register(sock, zmq.POLLIN)
        while True:
            ready = dict(poller.poll())
            if self._wake_in in ready:
                return
            if self._control in ready:
                self._batch(self._control, self._from_client)
            if self._link in ready:
                self._batch(self._link, self._from_broker)
            if self._events in ready:
                self._batch(self._events, self._subscription)

    @staticmethod
    def _batch(sock: zmq.Socket[Any], handle: Callable[[list[zmq.Frame]], None]) -> None:
        for _ in range(_BATCH):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            handle(frames)

    def _from_client(self, frames: list[zmq.Frame]) -> None:
        """A complete client message, with its ZAP User-Id and Peer-Address, to the broker."""
        head = frames[0]
        user_id = str(head.get("User-Id")).encode()
        address = str(head.get("Peer-Address")).encode()
        self._link.send_multipart([TAG, CLIENT, user_id, address, *frames[:MAX_FORWARDED_FRAMES]], copy=False)

    def _from_broker(self, frames: list[zmq.Frame]) -> None:
        """A reply out on the control ROUTER, an event on the PUB."""
        if len(frames) < 3 or frames[0].bytes != TAG:
            return
        command = frames[1].bytes
        if command == REPLY:
            self._reply(frames[2:])
        elif command == PUBLISH:
            self._events.send_multipart(frames[2:], copy=False)

    def _subscription(self, frames: list[zmq.Frame]) -> None:
        """A subscriber's (un)subscription: a hello topic's is answered with one SUBSCRIBED event on it."""
        data = frames[0].bytes
        if len(frames) != 1 or data[:1] != bytes([_SUBSCRIBE]) or not data[1:].startswith(HELLO.encode()):
            return
        second, sent = self._welcomes
        now = int(time.monotonic())
        if now != second:
            second, sent = now, 0
        if sent >= _WELCOMES_PER_SECOND:
            return
        self._welcomes = (second, sent + 1)
        _, message = self._wire.serialize(SUBSCRIBED, {}, idents=[data[1:]])
        self._events.send_multipart(message)

    def _reply(self, frames: list[zmq.Frame]) -> None:
        """Send a reply to its client; one that cannot go (ROUTER_MANDATORY says why) is logged, never silent."""
        try:
            self._control.send_multipart(frames, zmq.NOBLOCK, copy=False)  # never wait on one slow client
        except zmq.Again:
            self._dropped("its queue is full (it does not read)")
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            self._dropped("it is no longer connected")

    def _dropped(self, reason: str) -> None:
        """Log a reply dropped for *reason*: at most every 10 s per reason, with how many were not logged."""
        suppressed = self._drops.allow(reason, time.monotonic())
        if suppressed is not None:
            more = f" ({suppressed} more since the last report)" if suppressed else ""
            log.warning("dropped a reply to a client: %s%s", reason, more)

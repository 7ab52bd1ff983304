"""One I/O thread for every relay of a process: it polls each relay's sockets and moves the messages.

A relay hands its sockets over with ``add`` (from then on only this thread touches them: zmq sockets
are not thread-safe) and takes them back with ``remove``, which returns once this thread has closed
them. Both are safe from any thread: a command goes on a queue, and a byte on a socket pair that the
loop polls with the zmq sockets wakes it.

Each channel is a pair of sockets; whatever one receives is sent on the other, frames untouched and
uncopied, as libzmq's own proxy does. Sends never block the thread: a message the far side cannot
take yet (a DEALER towards a kernel whose queue is full) waits, and its side is not read until it
has gone — back-pressure on that one channel only, as a blocked proxy thread gave. XPUB and ROUTER
never refuse: they drop for a peer at its high-water mark (``QUEUE_HWM``), as a kernel's own PUB does.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq

__all__ = ["BATCH", "Forwarding", "RelayLoop"]

log = logging.getLogger(__name__)

# Messages taken from one socket per turn: a busy kernel cannot starve the others.
BATCH = 64
_STOP_WAIT = 10.0  # seconds: a remove or stop that takes longer means the loop thread is wedged


@dataclass(eq=False)
class Forwarding:
    """What one relay hands the loop: its (front, back) channel pairs, and a monitor with its reader."""

    pairs: list[tuple[zmq.Socket[Any], zmq.Socket[Any]]]
    monitor: zmq.Socket[Any] | None = None
    on_monitor: Callable[[list[bytes]], None] | None = None
    closed: threading.Event = field(default_factory=threading.Event)

    def sockets(self) -> list[zmq.Socket[Any]]:
        """Every socket, the monitor last."""
        found = [sock for pair in self.pairs for sock in pair]
        return found + ([self.monitor] if self.monitor is not None else [])

    def close(self) -> None:
        """Close every socket (by their owner); a monitor is detached first, or libzmq never frees its socket."""
        for front, back in self.pairs:
            for sock in (front, back):
                with contextlib.suppress(zmq.ZMQError):
                    sock.disable_monitor()
        for sock in self.sockets():
            sock.close(linger=0)
        self.closed.set()


class RelayLoop:
    """The thread forwarding for every relay of one context."""

    def __init__(self, ctx: zmq.Context[Any]) -> None:
        self.ctx = ctx
        self._commands: queue.SimpleQueue[tuple[str, Forwarding | None]] = queue.SimpleQueue()
        self._wake_in, self._wake_out = socket.socketpair()
        for end in (self._wake_in, self._wake_out):
            end.setblocking(False)
        self._poller = zmq.Poller()
        self._wake_fd = self._wake_in.fileno()
        self._poller.register(self._wake_fd, zmq.POLLIN)
        self._peer: dict[zmq.Socket[Any], zmq.Socket[Any]] = {}
        self._pending: dict[zmq.Socket[Any], list[zmq.Frame]] = {}  # per destination: the message it refused
        self._monitors: dict[zmq.Socket[Any], Callable[[list[bytes]], None]] = {}
        self._forwardings: set[Forwarding] = set()
        self._thread = threading.Thread(target=self._run, name="relay-loop", daemon=True)
        self._thread.start()

    # -- any thread -------------------------------------------------------------------------

    def add(self, forwarding: Forwarding) -> None:
        """Hand *forwarding*'s sockets to the loop (the caller must not touch them again)."""
        if not self._thread.is_alive():
            forwarding.close()
            raise RuntimeError("the relay loop has stopped")
        self._command("add", forwarding)

    def remove(self, forwarding: Forwarding) -> None:
        """Stop forwarding and return once the loop has closed the sockets."""
        if self._thread.is_alive():
            self._command("remove", forwarding)
            if forwarding.closed.wait(_STOP_WAIT):
                return
            log.error("the relay loop did not close a relay's sockets within %g s", _STOP_WAIT)
        elif not forwarding.closed.is_set():
            forwarding.close()  # the thread is gone: nobody else owns them now

    def stop(self) -> None:
        """Close every socket still forwarded, end the thread, close the wake-up pair."""
        if self._thread.is_alive():
            self._command("stop", None)
            self._thread.join(_STOP_WAIT)
        for end in (self._wake_in, self._wake_out):
            end.close()

    def _command(self, what: str, forwarding: Forwarding | None) -> None:
        self._commands.put((what, forwarding))
        with contextlib.suppress(BlockingIOError):  # full: the loop has wake-ups enough to read
            self._wake_out.send(b"\0")

    # -- the loop thread --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._turn():
                pass
        except Exception:
            log.exception("the relay loop failed; every relay of this worker is closed")
        finally:
            for forwarding in list(self._forwardings):
                self._drop(forwarding)
            while not self._commands.empty():  # handed over as the loop ended: close them too
                _, late = self._commands.get_nowait()
                if late is not None and not late.closed.is_set():
                    late.close()

    def _turn(self) -> bool:
        """One poll and what it found; False once told to stop."""
        for sock, events in self._poller.poll():
            if sock == self._wake_fd:  # zmq.Poller names a plain socket by its descriptor
                if not self._take_commands():
                    return False
            elif sock in self._peer or sock in self._monitors:  # not closed by a command this turn
                self._ready(sock, events)
        return True

    def _take_commands(self) -> bool:
        with contextlib.suppress(BlockingIOError):
            while self._wake_in.recv(4096):
                pass
        while True:
            try:
                what, forwarding = self._commands.get_nowait()
            except queue.Empty:
                return True
            if what == "stop":
                return False
            assert forwarding is not None
            (self._adopt if what == "add" else self._drop)(forwarding)

    def _adopt(self, forwarding: Forwarding) -> None:
        self._forwardings.add(forwarding)
        for front, back in forwarding.pairs:
            self._peer[front], self._peer[back] = back, front
            self._poller.register(front, zmq.POLLIN)
            self._poller.register(back, zmq.POLLIN)
        if forwarding.monitor is not None and forwarding.on_monitor is not None:
            self._monitors[forwarding.monitor] = forwarding.on_monitor
            self._poller.register(forwarding.monitor, zmq.POLLIN)

    def _drop(self, forwarding: Forwarding) -> None:
        if forwarding not in self._forwardings:
            return
        self._forwardings.discard(forwarding)
        for sock in forwarding.sockets():
            with contextlib.suppress(KeyError):  # not polled at all while both its directions wait
                self._poller.unregister(sock)
            self._peer.pop(sock, None)
            self._pending.pop(sock, None)
            self._monitors.pop(sock, None)
        forwarding.close()

    def _ready(self, sock: zmq.Socket[Any], events: int) -> None:
        try:
            if events & zmq.POLLOUT:
                self._resend(sock)
            if events & zmq.POLLIN:
                reader = self._monitors.get(sock)
                if reader is not None:
                    self._read_monitor(sock, reader)
                elif sock in self._peer:
                    self._forward(sock)
        except zmq.ZMQError as exc:  # one channel's trouble must not stop every relay
            log.warning("relay socket error: %s", exc)
        except Exception:  # nor a relay's monitor reader that fails
            log.exception("relay loop: a socket's event could not be handled")

    def _read_monitor(self, sock: zmq.Socket[Any], reader: Callable[[list[bytes]], None]) -> None:
        with contextlib.suppress(zmq.Again):
            for _ in range(BATCH):
                reader(sock.recv_multipart(zmq.NOBLOCK))

    def _forward(self, source: zmq.Socket[Any]) -> None:
        target = self._peer[source]
        for _ in range(BATCH):
            if target in self._pending:
                return
            try:
                frames = source.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._send(target, frames)

    def _send(self, target: zmq.Socket[Any], frames: list[zmq.Frame]) -> None:
        try:
            # libzmq takes a multipart message whole or not at all: only its first frame can be refused.
            target.send_multipart(frames, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            self._pending[target] = frames
            self._watch(target)

    def _resend(self, target: zmq.Socket[Any]) -> None:
        frames = self._pending.pop(target, None)
        if frames is None:
            return
        self._send(target, frames)
        if target not in self._pending:
            self._watch(target)

    def _watch(self, target: zmq.Socket[Any]) -> None:
        """Poll *target* for room while it holds a refused message, and its source for input only when not."""
        for sock in (target, self._peer[target]):
            flags = (0 if self._peer[sock] in self._pending else zmq.POLLIN) | (
                zmq.POLLOUT if sock in self._pending else 0
            )
            self._poller.register(sock, flags)

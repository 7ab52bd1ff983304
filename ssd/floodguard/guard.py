"""The flood guard: a thread that follows the accepted connections of some sockets and cuts the one flooding them.

libzmq's socket monitor reports each accepted TCP connection with its file
descriptor (``EVENT_ACCEPTED``) and its end (``EVENT_DISCONNECTED``,
``EVENT_CLOSED``). Every tick the guard reads the process's memory in use (mallinfo2);
when the policy (``policy.FloodPolicy``) finds it over the threshold, the
guard reads each connection's received byte count from the kernel (TCP_INFO)
and shuts down the connection the policy names. libzmq then sees that
connection end and drops (rolls back) the partial message it held for it;
``malloc_trim`` hands the freed memory back to the system.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import zmq
from zmq.utils.monitor import _MonitorMessage, parse_monitor_message

from ssd.floodguard.peers import local_peer_uid
from ssd.floodguard.policy import FloodPolicy

__all__ = ["Cut", "FloodGuard", "bytes_received", "memory_in_use", "resident_bytes"]

log = logging.getLogger(__name__)

# struct tcp_info (linux/tcp.h): 8 one-byte fields, 24 __u32 (to offset 104), then __u64 pacing_rate,
# max_pacing_rate, bytes_acked, and bytes_received at offset 128.
_BYTES_RECEIVED = struct.Struct("=Q")
_BYTES_RECEIVED_AT = 128
_TCP_INFO_LEN = 256  # ask for more than we read: the kernel returns what it has
_PAGE = os.sysconf("SC_PAGE_SIZE")
_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED
_TRIM_EVERY = 0.2
SETTLE = 0.5  # seconds after a cut until what it freed is measured (libzmq drops the partial message by then)
_MALLINFO2_FIELDS = [
    "arena",
    "ordblks",
    "smblks",
    "hblks",
    "hblkhd",
    "usmblks",
    "fsmblks",
    "uordblks",
    "fordblks",
    "keepcost",
]


def resident_bytes() -> int:
    """This process's resident memory in bytes (/proc/self/statm)."""
    with open("/proc/self/statm", "rb") as fh:
        return int(fh.read().split()[1]) * _PAGE


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2_FIELDS]


def _find_mallinfo2() -> Callable[[], _MallInfo2] | None:
    try:
        function = ctypes.CDLL(None).mallinfo2  # glibc 2.33 and later
    except (OSError, AttributeError):
        return None
    function.restype = _MallInfo2
    return cast(Callable[[], _MallInfo2], function)


_mallinfo2 = _find_mallinfo2()


def memory_in_use() -> int:
    """Bytes malloc has handed out and not got back (libzmq's messages are there); resident memory without glibc.

    Unlike resident memory, this falls as soon as libzmq frees a dropped message, so one cut does not leave
    the guard over its threshold, cutting innocent connections.
    """
    if _mallinfo2 is None:
        return resident_bytes()
    info = _mallinfo2()
    return int(info.uordblks + info.hblkhd)


def _borrow(fd: int) -> socket.socket:
    """A socket object on a duplicate of *fd* (closing it leaves *fd* open; shutdown acts on the connection)."""
    copy = os.dup(fd)
    try:
        return socket.socket(fileno=copy)
    except OSError:
        os.close(copy)
        raise


def bytes_received(fd: int) -> int | None:
    """Bytes the kernel has received on TCP socket *fd* since it connected; None if *fd* is not one."""
    try:
        with _borrow(fd) as sock:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    except OSError:
        return None
    if len(info) < _BYTES_RECEIVED_AT + _BYTES_RECEIVED.size:
        return None
    return int(_BYTES_RECEIVED.unpack_from(info, _BYTES_RECEIVED_AT)[0])


def _peer(fd: int) -> str | None:
    try:
        with _borrow(fd) as sock:
            return str(sock.getpeername())
    except OSError:
        return None


def _owner(fd: int) -> int | None:
    try:
        with _borrow(fd) as sock:
            return local_peer_uid(sock)
    except OSError:
        return None


def _shutdown(fd: int) -> None:
    # Both directions: data that arrives after our FIN is answered with a reset (RFC 1122).
    with contextlib.suppress(OSError), _borrow(fd) as sock:
        sock.shutdown(socket.SHUT_RDWR)


def _malloc_trim() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


@dataclass(frozen=True)
class Cut:
    """A connection the guard shut down: its peer, the uid owning the peer's socket if local, what it sent,
    and how much memory in use fell within SETTLE seconds of the cut (a flood's cut frees what it held)."""

    peer: str
    uid: int | None
    received: int
    freed: int = 0


class FloodGuard(threading.Thread):
    """Watches *sockets*' TCP connections and memory; cuts what the policy names, and SETTLE seconds later
    calls *on_cut* (from the guard's thread: hand it to the event loop with call_soon_threadsafe)."""

    def __init__(
        self,
        ctx: zmq.Context[Any],
        sockets: Sequence[zmq.Socket[Any]],
        policy: FloodPolicy,
        *,
        tick: float = 0.025,
        on_cut: Callable[[Cut], object] = lambda cut: None,
        what: str = "this process",
    ) -> None:
        super().__init__(name="ssd-flood-guard", daemon=True)
        self.policy = policy
        self._ctx = ctx
        self._tick = tick
        self._on_cut = on_cut
        self._what = what
        self._addresses = [f"inproc://ssd-flood-guard-{id(self)}-{n}" for n in range(len(sockets))]
        for sock, address in zip(sockets, self._addresses, strict=True):
            sock.monitor(address, _EVENTS)
        self._connections: dict[int, str] = {}  # fd -> peer, as seen when accepted
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._trimmed = 0.0
        self._settling: tuple[Cut, int, float] | None = None  # a cut, memory in use then, when to measure
        self._owners_to_cut: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.cuts = 0

    def start_guarding(self) -> None:
        """Start the thread and return once it listens to the monitors (call before binding)."""
        self.start()
        if not self._ready.wait(10):
            raise RuntimeError("the flood guard did not start")

    def cut_owner(self, uid: int) -> None:
        """Shut down every connection whose local peer runs as *uid*, within a tick (any thread may call)."""
        self._owners_to_cut.put(uid)

    def stop(self) -> None:
        """Stop the thread and wait for it."""
        self._stopping.set()
        self.join()

    def run(self) -> None:
        """The thread: drain monitor events, check memory, every tick."""
        monitors = [self._ctx.socket(zmq.PAIR) for _ in self._addresses]
        poller = zmq.Poller()
        for monitor, address in zip(monitors, self._addresses, strict=True):
            monitor.connect(address)
            poller.register(monitor, zmq.POLLIN)
        self.policy.start(memory_in_use())
        self._ready.set()
        try:
            while not self._stopping.is_set():
                for monitor, _ in poller.poll(int(self._tick * 1000)):
                    while monitor.poll(0):
                        self._follow(parse_monitor_message(monitor.recv_multipart()))
                self._check()
                self._settle()
                self._cut_owners()
        finally:
            for monitor in monitors:
                monitor.close(linger=0)

    def _follow(self, event: _MonitorMessage) -> None:
        fd = event["value"]
        assert isinstance(fd, int)
        if event["event"] == zmq.EVENT_ACCEPTED:
            peer = _peer(fd)
            if peer is not None:
                self._connections[fd] = peer
                self.policy.opened(fd)
        else:
            self._connections.pop(fd, None)
            self.policy.forget(fd)

    def _check(self) -> None:
        memory = memory_in_use()
        if not self.policy.wants_counts(memory):
            return
        received = {fd: n for fd in self._connections if (n := bytes_received(fd)) is not None}
        fd = self.policy.choose(memory, received)
        if fd is None:
            if self.policy.over(memory):
                self._trim()
            return
        peer = self._connections.pop(fd)
        self.policy.forget(fd)
        if _peer(fd) != peer:  # the fd was closed and reused since: not ours to cut
            return
        cut = Cut(peer, _owner(fd), received[fd])
        _shutdown(fd)
        self.cuts += 1
        log.warning(
            "cut the connection from %s (uid %s): %s holds %d MiB and it had sent the most (%d MiB)",
            peer,
            cut.uid,
            self._what,
            memory >> 20,
            cut.received >> 20,
        )
        self._trim()
        if self._settling is not None:
            self._report(self._settling[0])
        self._settling = (cut, memory, time.monotonic() + SETTLE)

    def _cut_owners(self) -> None:
        while not self._owners_to_cut.empty():
            uid = self._owners_to_cut.get()
            for fd, peer in list(self._connections.items()):
                if _owner(fd) == uid and _peer(fd) == peer:
                    del self._connections[fd]
                    self.policy.forget(fd)
                    _shutdown(fd)
                    log.warning("cut the connection from %s (uid %d): its owner was stopped", peer, uid)

    def _settle(self) -> None:
        """SETTLE seconds after a cut: measure what it freed, then report it."""
        if self._settling is None or time.monotonic() < self._settling[2]:
            return
        cut, memory, _ = self._settling
        self._settling = None
        self._report(replace(cut, freed=max(0, memory - memory_in_use())))

    def _report(self, cut: Cut) -> None:
        log.info("the cut of %s freed %d MiB", cut.peer, cut.freed >> 20)
        try:
            self._on_cut(cut)
        except Exception:  # the guard must go on guarding
            log.exception("error reporting a cut connection")

    def _trim(self) -> None:
        now = time.monotonic()
        if now - self._trimmed >= _TRIM_EVERY:
            self._trimmed = now
            _malloc_trim()

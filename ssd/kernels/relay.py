"""The CURVE relay: a kernel's five channels exposed on the host's address, encrypted.

The kernel binds ``ipc`` sockets in a 0700 folder of its user (kernels started
before that: 127.0.0.1). For each channel the relay binds a CURVE server
socket on the host's address and pairs it with a plain socket connected to
the kernel; one thread per process, the ``RelayLoop``, forwards between the
pairs of every relay (no thread and no message copy per kernel):

    shell, control, stdin, hb   ROUTER (CURVE server)  <-> DEALER  -> kernel
    iopub                       XPUB   (CURVE server)  <-> XSUB    -> kernel

Jupyter's semantics survive the extra hop: ROUTER prepends each client's
identity, so replies find their client; the shell and stdin DEALERs share one
routing id, so an ``input_request`` (which the kernel addresses with the
shell request's identities) reaches the client that ran the cell; XPUB is
verbose, so every new subscriber's subscription reaches the kernel (its iopub
welcome). The heartbeat is answered by the kernel itself, so it stops when
the kernel dies.

Which client keys a relay admits is the ``RelayGate``'s business (ZAP).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import parse_monitor_message

from ssd.kernels.connection import relay_connection_info
from ssd.kernels.proxy import channel_pair, monitor_socket
from ssd.kernels.relayloop import Forwarding, RelayLoop
from ssd.kernels.transport import kernel_endpoint, secure_link

__all__ = ["CHANNELS", "HEARTBEAT_IVL_MS", "HEARTBEAT_TIMEOUT_MS", "PortBusy", "Relay", "RelayGate", "new_relay_keys"]

log = logging.getLogger(__name__)

CHANNELS = ("shell", "control", "stdin", "iopub", "hb")
# One routing id for the relay's shell and stdin DEALERs (see the module docstring).
RELAY_IDENTITY = b"ssd-relay"
# libzmq heartbeats on the client side of the relay: a dead peer is noticed (and the
# connection dropped and re-made by the client) within seconds, not at TCP's pace.
HEARTBEAT_IVL_MS = 2000
HEARTBEAT_TIMEOUT_MS = 6000


class PortBusy(OSError):
    """A port the relay had before is taken (for now: perhaps by the relay of a worker still exiting)."""


def new_relay_keys() -> dict[str, str]:
    """A fresh per-kernel CURVE keypair, as jupyter_client's connection-file keys."""
    public, secret = zmq.curve_keypair()
    return {"curve_publickey": public.decode(), "curve_secretkey": secret.decode()}


class Relay:
    """The relay of one kernel: five socket pairs forwarded by *loop*, and a count of the clients connected to
    its shell (kept by the loop's thread from the shell socket's monitor)."""

    identity = RELAY_IDENTITY  # of its shell and stdin DEALERs: one relay per kernel (a ROUTER refuses a twin)

    def __init__(
        self,
        loop: RelayLoop,
        kernel_info: dict[str, Any],
        bind_ip: str,
        keys: dict[str, str],
        *,
        domain: str,
        ports: dict[str, int] | None = None,
        strict: bool = False,
    ) -> None:
        self.loop = loop
        self.ctx = loop.ctx
        self.kernel_info = kernel_info
        self.bind_ip = bind_ip
        self.keys = keys
        self.domain = domain
        self.ports: dict[str, int] = {}
        self._wanted = ports or {}
        self._strict = strict  # the wanted ports or nothing (PortBusy)
        self._forwarding: Forwarding | None = None
        self.monitor: zmq.Socket[Any] | None = None
        self._clients: set[int] = set()
        self.last_client_change = 0.0  # epoch seconds of the last client connect or disconnect

    def start(self) -> dict[str, int]:
        """Bind the five front sockets (the wanted ports if free, else new ones), hand them to the loop."""
        pairs: list[tuple[zmq.Socket[Any], zmq.Socket[Any]]] = []
        try:
            for channel in CHANNELS:
                self._pair(channel, pairs)
        except BaseException:  # out of sockets, or a port taken: leave none open, or the context never terminates
            Forwarding(pairs, self.monitor).close()
            self.monitor = None
            raise
        self._forwarding = Forwarding(pairs, self.monitor, self.note_monitor_event)
        self.loop.add(self._forwarding)
        return dict(self.ports)

    def _pair(self, channel: str, pairs: list[tuple[zmq.Socket[Any], zmq.Socket[Any]]]) -> None:
        """Make, set up and bind one channel's sockets, appended to *pairs* as soon as they exist."""
        front, back = channel_pair(self.ctx, channel)
        pairs.append((front, back))
        # After a restart in place the kernel binds again: reconnect as fast as the worker's own link does
        # (ssd.kernels.link), so that the iopub subscription reaches the new kernel before the restart is
        # answered and the first cell's output is not lost to a relay still waiting out libzmq's 100 ms.
        back.reconnect_ivl = 20
        front.curve_server = True
        front.curve_secretkey = self.keys["curve_secretkey"].encode()
        # The heartbeat admits any client key (jupyter_client uses a throwaway one there).
        front.zap_domain = (f"{self.domain}:hb" if channel == "hb" else self.domain).encode()
        front.heartbeat_ivl = HEARTBEAT_IVL_MS
        front.heartbeat_timeout = HEARTBEAT_TIMEOUT_MS
        if channel in ("shell", "stdin"):
            back.routing_id = self.identity
        if channel == "shell":
            self.monitor = monitor_socket(
                self.ctx, front, zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_MONITOR_STOPPED
            )
        self.ports[channel] = self._bind(front, self._wanted.get(channel, 0))
        secure_link(back, self.kernel_info)  # a kernel in a Slurm job: CURVE to its job's relay
        back.connect(kernel_endpoint(self.kernel_info, channel))

    def _bind(self, sock: zmq.Socket[Any], port: int) -> int:
        host = f"[{self.bind_ip}]" if ":" in self.bind_ip else self.bind_ip
        sock.ipv6 = ":" in self.bind_ip
        if port:
            try:
                sock.bind(f"tcp://{host}:{port}")
                return port
            except zmq.ZMQError:
                if self._strict:
                    raise PortBusy(f"relay port {port} is taken") from None
                log.warning("relay port %d is taken now; the kernel gets a new one", port)
        return sock.bind_to_random_port(f"tcp://{host}")

    def note_monitor_event(self, frames: list[bytes]) -> None:
        """Count shell clients from the monitor's events (the relay loop's thread reads the monitor socket).

        By TCP connection (the event's value is its file descriptor): libzmq reports a CURVE handshake
        without saying for which connection. A client refused by ZAP is counted only until libzmq drops it.
        """
        event = parse_monitor_message(frames)
        fd = int(event["value"])
        self.last_client_change = time.time()
        if event["event"] == zmq.EVENT_ACCEPTED:
            self._clients.add(fd)
        elif event["event"] == zmq.EVENT_DISCONNECTED:
            self._clients.discard(fd)

    @property
    def clients(self) -> int:
        """Connections to the shell channel that are still open."""
        return len(self._clients)

    def connection_info(self) -> dict[str, Any]:
        """What a remote client needs: the classic keys with the relay's ports, plus the CURVE keys."""
        return relay_connection_info(self.kernel_info, self.bind_ip, self.ports, self.keys)

    def stop(self) -> None:
        """Take the sockets out of the loop, which closes them (the monitor too); idempotent."""
        if self._forwarding is not None:
            self.loop.remove(self._forwarding)
            self._forwarding = None
        self.monitor = None


class RelayGate:
    """ZAP for every relay of one worker: a kernel's channels admit only that kernel's key.

    jupyter_client (8.9+) connects with the connection file's keypair as its own
    client keypair, and so does ssd's tunnel; its heartbeat uses a throwaway
    key, which is harmless there (the heartbeat carries no data) and still
    needs the server key, which only the connection info holds.
    """

    def __init__(self, ctx: zmq.Context[Any]) -> None:
        self._keys: dict[str, bytes] = {}
        self._auth = ThreadAuthenticator(ctx, log=logging.getLogger("ssd.relay.zap"))
        self._auth.start()

    def admit(self, domain: str, public_key: str) -> None:
        """Let clients holding *public_key* into the relay with ZAP domain *domain* (and its heartbeat)."""
        self._keys[domain] = public_key.encode()
        for name in (domain, f"{domain}:hb"):  # pyzmq matches callback domains exactly
            self._auth.configure_curve_callback(name, self)

    def forget(self, domain: str) -> None:
        """Close the door of a stopped relay."""
        self._keys.pop(domain, None)
        for name in (domain, f"{domain}:hb"):
            self._auth.credentials_providers.pop(name, None)

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP decision, called by the authenticator thread with the client's Z85 key."""
        if domain.endswith(":hb"):
            return domain.removesuffix(":hb") in self._keys
        expected = self._keys.get(domain)
        return expected is not None and key == expected

    def stop(self) -> None:
        """Stop the authenticator thread."""
        self._auth.stop()

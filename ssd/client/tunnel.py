"""A local tunnel to a kernel's CURVE relay, for frontends that only know classic connection files.

Plain sockets on this machine, each forwarded by libzmq's proxy
(``ssd.kernels.proxy``) over CURVE to the relay:

    local ROUTER (shell, control, stdin, hb)  <->  DEALER, CURVE client  ->  relay
    local XPUB   (iopub)                      <->  XSUB,   CURVE client  ->  relay

The local sockets are ``ipc`` sockets in a 0700 folder of this user by default
(jupyter_client, qtconsole and Spyder's "Connect to an existing kernel" dialog
all read ``transport: ipc``), so no other local user can connect; with
``transport="tcp"`` they are TCP on 127.0.0.1, which every local user can
reach (iopub needs no key to read), for a frontend that takes only TCP.

The shell and stdin DEALERs share one routing id, so ``input()`` reaches the
frontend that ran the cell (the relay routes stdin by that id). libzmq
reconnects by itself after a network drop; ZMTP heartbeats notice a dead link
within seconds, and the tunnel reports losing and regaining the relay.

Given the endpoints of an earlier tunnel to the same kernel (``socket_dir``, a
stable private folder; ``ports``, TCP ports), it binds them again, so that a
frontend still holding the old connection file reconnects by itself; a TCP
port taken meanwhile is replaced by a free one and listed in ``moved``.
"""

from __future__ import annotations

import errno
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from ssd.kernels import sockdir
from ssd.kernels.connection import classic_info
from ssd.kernels.proxy import ChannelProxy, channel_pair, monitor_socket, stop_proxies
from ssd.kernels.relay import CHANNELS, HEARTBEAT_IVL_MS, HEARTBEAT_TIMEOUT_MS
from ssd.kernels.transport import CHANNEL_PORTS, ipc_paths

__all__ = ["DEFAULT_TRANSPORT", "Tunnel"]

# On Windows a 0700 folder in /tmp does not exist (nor do all libzmq builds have ipc): TCP on 127.0.0.1 there.
DEFAULT_TRANSPORT = "ipc" if sys.platform != "win32" and zmq.has("ipc") else "tcp"

_WATCHED = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | zmq.EVENT_MONITOR_STOPPED


class Tunnel:
    """Forwards a kernel's five channels from this machine to its relay; ``local_info()`` is the classic file."""

    def __init__(
        self,
        remote: dict[str, Any],
        *,
        transport: str = DEFAULT_TRANSPORT,
        local_ip: str = "127.0.0.1",
        socket_dir: Path | None = None,
        ports: Mapping[str, int] | None = None,
    ) -> None:
        if "curve_publickey" not in remote:
            raise ValueError("this kernel has no CURVE relay (the host uses plain transport): connect directly")
        if transport not in ("ipc", "tcp"):
            raise ValueError(f"unknown tunnel transport {transport!r} (ipc or tcp)")
        self.remote = remote
        self.transport = transport
        self.local_ip = local_ip
        self._socket_dir: Path | None = socket_dir  # checked private by the caller (tunnelstate.socket_dir)
        self._wanted_ports = dict(ports or {})
        self.moved: list[str] = []  # channels whose earlier TCP port was taken
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.ports: dict[str, int] = {}
        self._identity = b"ssd-tunnel-" + secrets.token_hex(8).encode()
        self._proxies: list[ChannelProxy] = []
        self._monitor: zmq.Socket[Any] | None = None
        self.connected = False
        self.ever_connected = False

    def start(self) -> dict[str, Any]:
        """Bind the local sockets, connect to the relay, start the proxies; return the local info."""
        for channel in CHANNELS:
            local, remote = channel_pair(self.ctx, channel)
            self.ports[channel] = self._bind_local(local, channel)
            self._connect_remote(remote, channel)
            self._proxies.append(ChannelProxy(self.ctx, channel, local, remote))
        for proxy in self._proxies:
            proxy.start()
        return self.local_info()

    def _bind_local(self, sock: zmq.Socket[Any], channel: str) -> int:
        """Bind a local socket: ``{folder}/k-N`` (jupyter_client's ipc numbering), or a free port on TCP."""
        if self.transport == "tcp":
            return self._bind_tcp(sock, channel)
        if self._socket_dir is None:
            self._socket_dir = sockdir.new_private_dir("ssd-tunnel-")
        port = CHANNEL_PORTS.index(f"{channel}_port") + 1
        sock.bind(f"ipc://{self._socket_dir}/k-{port}")
        return port

    def _bind_tcp(self, sock: zmq.Socket[Any], channel: str) -> int:
        """The channel's earlier port when it is free, else any free port (the channel is then listed in moved)."""
        wanted = self._wanted_ports.get(channel)
        if wanted is not None:
            try:
                sock.bind(f"tcp://{self.local_ip}:{wanted}")
                return wanted
            except zmq.ZMQError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                self.moved.append(channel)
        return sock.bind_to_random_port(f"tcp://{self.local_ip}")

    def _connect_remote(self, sock: zmq.Socket[Any], channel: str) -> None:
        public = self.remote["curve_publickey"].encode()
        # jupyter_client's convention: the connection info's keypair is also the client's keypair.
        sock.curve_serverkey = public
        sock.curve_publickey = public
        sock.curve_secretkey = self.remote["curve_secretkey"].encode()
        sock.heartbeat_ivl = HEARTBEAT_IVL_MS
        sock.heartbeat_timeout = HEARTBEAT_TIMEOUT_MS
        sock.reconnect_ivl_max = 2000
        if channel in ("shell", "stdin"):
            sock.routing_id = self._identity
        if channel == "shell":
            self._monitor = monitor_socket(self.ctx, sock, _WATCHED)
        ip = self.remote["ip"]
        host = f"[{ip}]" if ":" in ip else ip
        sock.ipv6 = ":" in ip
        sock.connect(f"tcp://{host}:{self.remote[channel + '_port']}")

    def local_info(self) -> dict[str, Any]:
        """The classic connection info of the local end (what Spyder's dialog accepts)."""
        info = classic_info(self.remote)
        info.update({f"{channel}_port": port for channel, port in self.ports.items()})
        info["transport"] = self.transport
        info["ip"] = f"{self._socket_dir}/k" if self.transport == "ipc" else self.local_ip
        return info

    def poll_status(self, timeout: float) -> list[str]:
        """Wait up to *timeout* seconds for link changes; return them as ``connected``/``lost`` words."""
        changes: list[str] = []
        if self._monitor is None or not self._monitor.poll(int(timeout * 1000)):
            return changes
        while self._monitor.poll(0):
            event = parse_monitor_message(self._monitor.recv_multipart())
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED and not self.connected:
                changes.append("reconnected" if self.ever_connected else "connected")
                self.connected = self.ever_connected = True
            elif event["event"] == zmq.EVENT_DISCONNECTED and self.connected:
                changes.append("lost")
                self.connected = False
        return changes

    def stop(self) -> None:
        """Stop the proxies and close everything."""
        stop_proxies(self._proxies)
        if self._monitor is not None:
            self._monitor.close(linger=0)
            self._monitor = None
        self.ctx.term()
        if self.transport == "ipc" and self._socket_dir is not None:
            sockdir.remove_sockets(ipc_paths(self.local_info()))
            self._socket_dir = None

    def __enter__(self) -> Tunnel:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""Who binds where: the one seam for kernel channels (what a client is given: ``ssd.kernels.connection``).

``curve`` (the default): the kernel binds ``ipc`` sockets in a 0700 folder of
its user (``ssd.kernels.sockdir``), so no other local user can connect to it,
and the kernel worker's relay (``ssd.kernels.relay``) binds ``[kernels] ip``
(or the daemon's own bind address) with CURVE; clients get the relay's ports
and the per-kernel keys (jupyter_client's ``curve_publickey``/``curve_secretkey``).
``plain``: the kernel binds that address itself over TCP, and clients get its
ports (any local user can reach them too: that is the plain LAN mode).
Either way a client that receives a wildcard address connects to the host it
reached the daemon on.

The ``ipc`` convention is jupyter_client's and ipykernel's: ``ip`` is a path
prefix and each channel's "port" a small integer, the socket being
``{ip}-{port}``. Kernels recorded before ipc (``transport: tcp`` on 127.0.0.1)
keep working: every endpoint is built from the kernel's own connection info.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import zmq

from ssd.kernels.connection import WILDCARDS

__all__ = [
    "CHANNEL_PORTS",
    "ChannelPlan",
    "channel_plan",
    "ipc_paths",
    "kernel_bind_ip",
    "kernel_endpoint",
    "secure_link",
]

# The five "<channel>_port" keys of a connection info.
CHANNEL_PORTS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


def kernel_bind_ip(kernels_ip: str, server_bind: str) -> str:
    """The address a kernel binds with the plain transport."""
    address = kernels_ip or server_bind
    if address in WILDCARDS:
        return "0.0.0.0"  # noqa: S104 (plain transport on all interfaces is what the host asked for)
    return address


class ChannelPlan(NamedTuple):
    """How the kernel binds (``ipc``, or ``tcp`` on *kernel_ip*), and where the relay binds (None: no relay)."""

    kernel_transport: str
    kernel_ip: str
    relay_ip: str | None


def channel_plan(transport: str, kernels_ip: str, server_bind: str) -> ChannelPlan:
    """The addresses for *transport* on a host configured with these addresses."""
    outside = kernel_bind_ip(kernels_ip, server_bind)
    if transport == "plain":
        return ChannelPlan("tcp", outside, None)
    return ChannelPlan("ipc", "", outside)


def kernel_endpoint(info: dict[str, Any], channel: str) -> str:
    """Where to connect to *channel* of a kernel on this machine, from its own connection info."""
    port = int(info[f"{channel}_port"])
    if info.get("transport", "tcp") in ("ipc", "inproc"):  # inproc: a job's kernel not placed yet (no peer)
        return f"{info['transport']}://{info['ip']}-{port}"
    ip = str(info["ip"])
    if ip in WILDCARDS:
        ip = "127.0.0.1"  # a kernel that bound every interface (plain transport)
    return f"tcp://{ip}:{port}"


def ipc_paths(info: dict[str, Any]) -> list[str]:
    """The socket files of an ``ipc`` kernel (none for TCP)."""
    if info.get("transport", "tcp") != "ipc":
        return []
    return [f"{info['ip']}-{int(info[key])}" for key in CHANNEL_PORTS]


def secure_link(sock: zmq.Socket[Any], info: dict[str, Any]) -> None:
    """CURVE client keys on a socket to a kernel behind its job's relay (``link_*`` keys of its connection
    info, ``ssd.kernels.slurm.jobhost``); a local kernel's sockets stay as they are."""
    if "link_serverkey" in info:
        sock.curve_serverkey = str(info["link_serverkey"]).encode()
        sock.curve_publickey = str(info["link_publickey"]).encode()
        sock.curve_secretkey = str(info["link_secretkey"]).encode()

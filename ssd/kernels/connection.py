"""Kernel connection info, computed in one place: what the worker serves, the broker seals, the client uses.

A kernel's record holds its own (classic) connection info and, with the CURVE
transport, its relay's address, ports and keypair. ``served_connection`` is
what a client connects to (the relay, else the kernel itself): the kernel
worker puts it in its replies and the broker seals it into ``kernel_state``
events. ``client_info`` is the same info as a client on another machine uses
it. Pure functions: no sockets, no files.
"""

from __future__ import annotations

from typing import Any

from ssd.kernels.record import KernelRecord

__all__ = [
    "CLASSIC_KEYS",
    "CURVE_KEYS",
    "WILDCARDS",
    "classic_info",
    "client_info",
    "relay_connection_info",
    "served_connection",
]

# The keys of a classic connection file: exactly what Spyder's "Connect to an
# existing kernel" dialog and older jupyter_client versions accept.
CLASSIC_KEYS = (
    "shell_port",
    "iopub_port",
    "stdin_port",
    "control_port",
    "hb_port",
    "ip",
    "key",
    "transport",
    "signature_scheme",
    "kernel_name",
)

# Added to the classic keys for an encrypted kernel (jupyter_client 8.9+, ipykernel 7.4+).
CURVE_KEYS = ("curve_publickey", "curve_secretkey")

WILDCARDS = frozenset({"*", "0.0.0.0", "::", ""})  # noqa: S104 (recognized, not bound)


def classic_info(info: dict[str, Any]) -> dict[str, Any]:
    """Only the classic keys of a connection info, in their usual order."""
    return {key: info[key] for key in CLASSIC_KEYS if key in info}


def relay_connection_info(
    kernel_info: dict[str, Any], ip: str, ports: dict[str, int], keys: dict[str, str]
) -> dict[str, Any]:
    """The classic keys with the relay's address and ports, plus the relay's CURVE keys."""
    info = {key: kernel_info[key] for key in ("key", "signature_scheme", "kernel_name")}
    info.update({f"{channel}_port": port for channel, port in ports.items()})
    keypair = {key: keys[key] for key in CURVE_KEYS}
    return {**info, "ip": ip, "transport": "tcp", **keypair}


def served_connection(record: KernelRecord) -> dict[str, Any]:
    """What a client connects to for *record*'s kernel: its relay (with the CURVE keys), or the kernel itself."""
    # From the record, not the relay: right while an adopted kernel's relay is still reopening.
    relay = record.relay
    if relay is None:
        return dict(record.connection)
    return relay_connection_info(record.connection, relay["ip"], relay["ports"], relay)


def client_info(info: dict[str, Any], host: str) -> dict[str, Any]:
    """Connection info as a client on another machine uses it (classic keys, plus the CURVE keys of an
    encrypted kernel): a wildcard ip becomes *host*."""
    result = classic_info(info) | {key: info[key] for key in CURVE_KEYS if key in info}
    if str(result.get("ip", "")) in WILDCARDS:
        result["ip"] = host
    return result

"""Who binds where, and which address a client is given: the one seam for kernel channels.

With the ``plain`` transport the kernel binds ``[kernels] ip`` (or the
daemon's own bind address) itself, and a client that receives a wildcard
address connects to the host it reached the daemon on. The CURVE relay
replaces this seam, not its callers.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CLASSIC_KEYS", "classic_info", "client_info", "kernel_bind_ip"]

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

_WILDCARDS = {"*", "0.0.0.0", "::", ""}  # noqa: S104 (recognized, not bound)


def kernel_bind_ip(kernels_ip: str, server_bind: str) -> str:
    """The address a kernel binds with the plain transport."""
    address = kernels_ip or server_bind
    if address in _WILDCARDS:
        return "0.0.0.0"  # noqa: S104 (plain transport on all interfaces is what the host asked for)
    return address


def classic_info(info: dict[str, Any]) -> dict[str, Any]:
    """Only the classic keys of a connection info, in their usual order."""
    return {key: info[key] for key in CLASSIC_KEYS if key in info}


def client_info(info: dict[str, Any], host: str) -> dict[str, Any]:
    """Connection info as a client on another machine uses it: a wildcard ip becomes *host*."""
    result = classic_info(info)
    if str(result.get("ip", "")) in _WILDCARDS:
        result["ip"] = host
    return result

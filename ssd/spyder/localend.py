"""Where a Spyder console's connection file points: the kernel's CURVE relay, or an in-process tunnel to it.

Spyder's jupyter_client 8.9+ reads CURVE keys from a connection file and talks
to the relay directly; an older one would ignore them, so then a classic file
points at a ``ssd.client.tunnel.Tunnel`` run inside Spyder's process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssd.client.hostspec import HostSpec
from ssd.client.kernels import write_connection_file
from ssd.client.tunnel import Tunnel

__all__ = ["TUNNEL_VARIABLE", "LocalEnd", "connection_file", "curve_capable", "local_end"]


def connection_file(folder: Path, host: HostSpec, kernel_id: str, info: dict[str, Any]) -> Path:
    """Write the console's connection file (0600, CURVE keys kept) in the plugin's private folder."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in host.host)
    return write_connection_file(folder / f"ssd-{safe}-{kernel_id}.json", info)


TUNNEL_VARIABLE = "SSD_SPYDER_TUNNEL"  # "1": always through an in-process tunnel (troubleshooting, tests)


def curve_capable() -> bool:
    """Whether Spyder's jupyter_client reads CURVE keys from a connection file and uses them on its sockets.

    jupyter_client 8.9+ declares them as traits of ``ConnectionFileMixin`` (which Spyder's kernel clients
    are); an older one silently ignores the keys and could not talk to the relay at all.
    """
    from jupyter_client.connect import ConnectionFileMixin

    return {"curve_publickey", "curve_secretkey"} <= set(ConnectionFileMixin.class_trait_names())


@dataclass
class LocalEnd:
    """What a console's connection file points at: the relay itself, or an in-process tunnel to it."""

    file: Path
    tunnel: Tunnel | None = None

    def close(self) -> None:
        """Stop the tunnel (if any) and remove the file."""
        if self.tunnel is not None:
            self.tunnel.stop()
            self.tunnel = None
        self.file.unlink(missing_ok=True)


def local_end(folder: Path, host: HostSpec, kernel_id: str, info: dict[str, Any]) -> LocalEnd:
    """The console's connection file: CURVE keys for a capable jupyter_client, else a classic file on a tunnel
    run in this process (its sockets in a private ipc folder, its proxies on threads of their own)."""
    if curve_capable() and os.environ.get(TUNNEL_VARIABLE) != "1":
        return LocalEnd(connection_file(folder, host, kernel_id, info))
    tunnel = Tunnel(info)
    local = tunnel.start()
    return LocalEnd(connection_file(folder, host, kernel_id, local), tunnel)

"""A kernel's connection files on this machine: where ssd-ctl writes them, and removing them when it ends.

A kernel's connection file is written on this machine with only the classic
keys (``ssd.kernels.transport.CLASSIC_KEYS``), 0600, so that Spyder's
"Connect to an existing kernel" dialog, ``jupyter console --existing`` and
any jupyter_client accept it. The HMAC key goes into that file and nowhere
else: never on stdout, not even with ``--json``.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_runtime_dir

from ssd.client import Client
from ssd.client.kernels import write_connection_file
from ssd.errors import ErrorCode, SSDError
from ssd.replies import KernelInfoReply, KernelStartReply

__all__ = [
    "choose_connection_file",
    "default_connection_file",
    "remove_default_files",
    "tunnel_file",
    "write_connection",
]


def default_connection_file(kernel_id: str) -> Path:
    """``<this client's Jupyter runtime dir>/kernel-ssd-<id>.json``."""
    return Path(jupyter_runtime_dir()) / f"kernel-ssd-{kernel_id}.json"


def choose_connection_file(requested: str | None, kernel_id: str, server_file: str, info: dict[str, Any]) -> Path:
    """Where to write *info*: PATH, or the default; never over the kernel's own file with other content.

    On the server's machine (or with a home shared by NFS) the default path is
    the very file the kernel reads again when it restarts. Writing the same
    content there is harmless; other content (a host name for a wildcard
    address) would break the restart, so the client's copy goes beside it.
    """
    path = Path(requested).expanduser().absolute() if requested else default_connection_file(kernel_id)
    if not _holds_other_info(path, server_file, info):
        return path
    if requested:
        raise SSDError(
            f"{path} is the kernel's own connection file on the server (it reads it again on restart); "
            "choose another --connection-file",
            code=ErrorCode.USAGE,
        )
    return path.with_name(f"kernel-ssd-{kernel_id}-client.json")


def _holds_other_info(path: Path, server_file: str, info: dict[str, Any]) -> bool:
    """True if *path* is the kernel's own connection file (*server_file*) and its content differs from *info*."""
    if str(path) != server_file:
        return False
    try:
        present = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(present, dict) and {k: present.get(k) for k in info} != info


def write_connection(client: Client, requested: str | None, reply: KernelStartReply | KernelInfoReply) -> Path:
    """Write the classic connection file of a kernel_start or kernel_info reply; return where."""
    info = client.connection_info(reply.connection)
    path = choose_connection_file(requested, reply.kernel.kernel_id, reply.connection_file, info)
    if not requested:  # Jupyter keeps its runtime dir private, as jupyter_core makes it
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return write_connection_file(path, info)


def remove_default_files(kernel_id: str) -> list[str]:
    """Remove the default connection files of a kernel that is gone (a stale file misleads --existing)."""
    removed = []
    default = default_connection_file(kernel_id)
    for path in (default, default.with_name(f"kernel-ssd-{kernel_id}-client.json")):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(str(path))
    return removed


def tunnel_file(kernel_id: str, requested: str | None) -> Path:
    """Where a tunnel's classic connection file goes."""
    if requested:
        return Path(requested).expanduser()
    runtime = Path(jupyter_runtime_dir())
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    return runtime / f"kernel-ssd-{kernel_id}-tunnel.json"

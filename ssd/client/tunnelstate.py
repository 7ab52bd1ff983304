"""Where a tunnel to a kernel bound its local end last time, so that a reopened tunnel binds the same endpoints.

A frontend that kept the tunnel's classic connection file (Spyder's console,
a jupyter_client) reconnects by itself when the same endpoints come back: the
same ``ipc`` paths (a stable 0700 folder per (host, kernel) in /tmp) or the
same 127.0.0.1 ports. ``ssd-ctl tunnel`` remembers them per (host, kernel) in
the client directory (``tunnels/KEY.json``, 0600, checked when read) and holds
``tunnels/KEY.lock`` while it runs, so two tunnels never fight for them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import msgspec

from ssd.errors import ErrorCode, SSDError
from ssd.files import write_atomic
from ssd.kernels.relay import CHANNELS
from ssd.kernels.sockdir import SOCKET_ROOT, check_private_dir
from ssd.paths import client_dir

__all__ = ["TunnelRecord", "held", "load", "save", "socket_dir", "tunnel_key"]

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 4096


class TunnelRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The local endpoints one tunnel bound: its transport and each channel's port (ipc: 1..5)."""

    host: str
    kernel_id: str
    transport: Literal["ipc", "tcp"]
    ports: dict[str, int]


def tunnel_key(host: str, kernel_id: str) -> str:
    """A short, file-name-safe key for (host, kernel)."""
    return hashlib.sha256(f"{host}\0{kernel_id}".encode()).hexdigest()[:16]


def _folder() -> Path:
    return client_dir() / "tunnels"


def socket_dir(key: str) -> Path:
    """The stable 0700 folder of this user for the tunnel's ipc sockets; refused unless it is ours and private."""
    path = Path(SOCKET_ROOT) / f"ssd-tunnel-{os.geteuid()}-{key}"
    check_private_dir(path)
    return path


def _valid(record: TunnelRecord, host: str, kernel_id: str) -> bool:
    return (
        (record.host, record.kernel_id) == (host, kernel_id)
        and set(record.ports) == set(CHANNELS)
        and all(0 < port < 65536 for port in record.ports.values())
    )


def load(host: str, kernel_id: str) -> TunnelRecord | None:
    """The endpoints of the last tunnel to (host, kernel); None when there is none or the record is not sound."""
    path = _folder() / f"{tunnel_key(host, kernel_id)}.json"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
            log.warning("ignoring %s: not a private file of this user", path)
            return None
        raw = fh.read(MAX_RECORD_BYTES + 1)
    try:
        record = msgspec.json.decode(raw[:MAX_RECORD_BYTES], type=TunnelRecord)
    except msgspec.DecodeError:
        record = None
    if record is None or len(raw) > MAX_RECORD_BYTES or not _valid(record, host, kernel_id):
        log.warning("ignoring %s: not a tunnel record for this kernel", path)
        return None
    return record


def save(record: TunnelRecord) -> None:
    """Remember *record* (0600, replaced atomically, in a 0700 folder)."""
    folder = _folder()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = folder / f"{tunnel_key(record.host, record.kernel_id)}.json"
    write_atomic(target, msgspec.json.encode(record), durable=True)


@contextlib.contextmanager
def held(host: str, kernel_id: str) -> Iterator[None]:
    """Hold the lock of (host, kernel) while a tunnel runs; refuse when another tunnel to it holds it."""
    folder = _folder()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(folder / f"{tunnel_key(host, kernel_id)}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SSDError(
                f"a tunnel to kernel {kernel_id} on {host} is already open (stop it first)", code=ErrorCode.TUNNEL_BUSY
            ) from None
        yield
    finally:
        os.close(fd)

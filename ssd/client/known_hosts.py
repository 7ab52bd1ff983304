"""The known-hosts file: one ``HOST:PORT PUBLIC-KEY`` line per pinned server.

Which lines speak for a server (``pins_for``): a HOST:PORT typed by a person
is its own line only, since two daemons on one machine (two users' user-mode
daemons) differ by port alone. A discovered instance's port comes from
unauthenticated mDNS, so a key pinned for that instance *name* at any port, or
for its address at that port, speaks for it: a spoofer announcing the name on
a new port meets the key-changed error, not a first-use prompt.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ssd.client.hostspec import HostSpec
from ssd.files import write_atomic
from ssd.keys import fingerprint, is_valid_public_key
from ssd.paths import client_dir

__all__ = ["KnownHost", "KnownHosts"]

_HEADER = "# ssd known hosts: HOST:PORT PUBLIC-KEY (Z85). Delete a line to forget that host.\n"


@dataclass(frozen=True)
class KnownHost:
    """One pinned server key."""

    host: str
    public_key: bytes

    @property
    def fingerprint(self) -> str:
        """The pinned key's fingerprint."""
        return fingerprint(self.public_key)


class KnownHosts:
    """Read and update the known-hosts file (rewritten atomically, mode 0600)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or client_dir() / "known_hosts"

    def entries(self) -> list[KnownHost]:
        """Return every well-formed entry; malformed lines are skipped."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        found = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and not line.startswith("#") and is_valid_public_key(parts[1].encode()):
                found.append(KnownHost(parts[0], parts[1].encode()))
        return found

    def get(self, host: str) -> KnownHost | None:
        """Return the entry pinned for *host* (``host:port``), if any."""
        for entry in self.entries():
            if entry.host == host:
                return entry
        return None

    def pins_for(self, spec: HostSpec) -> list[KnownHost]:
        """Every entry that speaks for *spec*: its own line, and for a discovered instance its name at any
        port and its address at that port (see the module docstring)."""
        return [entry for entry in self.entries() if _speaks_for(entry.host, spec)]

    def pin(self, host: str, public_key: bytes) -> None:
        """Pin *public_key* for *host*, replacing an older entry for that host."""
        with self._locked():
            kept = [e for e in self.entries() if e.host != host]
            kept.append(KnownHost(host, public_key))
            self._write(kept)

    def replace(self, spec: HostSpec, public_key: bytes) -> list[KnownHost]:
        """Pin *public_key* for *spec* in place of every entry that spoke for it; return those removed."""
        with self._locked():
            entries = self.entries()
            gone = [e for e in entries if _speaks_for(e.host, spec)]
            self._write([*(e for e in entries if e not in gone), KnownHost(spec.key, public_key)])
        return gone

    def forget(self, host: str) -> bool:
        """Remove *host*; tell whether it was there."""
        with self._locked():
            entries = self.entries()
            kept = [e for e in entries if e.host != host]
            if len(kept) != len(entries):
                self._write(kept)
        return len(kept) != len(entries)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialize read-modify-write among ssd-ctl processes, so no pin is lost."""
        self.path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, entries: list[KnownHost]) -> None:
        lines = "".join(f"{entry.host} {entry.public_key.decode()}\n" for entry in entries)
        write_atomic(self.path, _HEADER + lines, durable=True)


def _speaks_for(host: str, spec: HostSpec) -> bool:
    if host == spec.key:
        return True
    if not spec.discovered:
        return False
    assert spec.address is not None
    name = host.rpartition(":")[0]
    return name == spec.host or host == HostSpec(spec.address, spec.port).key

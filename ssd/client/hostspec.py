"""HOST arguments: ``name``, ``name:port``, ``1.2.3.4:port``, ``[::1]:port``.

A bare name (no port) that is not an address may also be a discovered
instance name: when a name resolver is installed (``ssd-ctl`` installs
zeroconf's, see ``ssd.client.discovery``), it is asked about such names.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DEFAULT_PORT", "HostSpec", "is_address", "parse_host", "set_name_resolver"]

DEFAULT_PORT = 9470


@dataclass(frozen=True)
class HostSpec:
    """Where a server listens; the key port defaults to the control port + 2."""

    host: str
    port: int = DEFAULT_PORT
    address: str | None = None  # where to connect when *host* is a discovered instance name

    @property
    def discovered(self) -> bool:
        """True when *host* is an instance name that discovery resolved (its port came from mDNS)."""
        return self.address is not None

    @property
    def key(self) -> str:
        """How this host is written in known hosts: ``host:port`` (``[v6]:port``)."""
        return f"{_bracketed(self.host)}:{self.port}"

    def endpoint(self, port: int | None = None) -> str:
        """A ZeroMQ TCP endpoint for *port* (default: the control port)."""
        return f"tcp://{_bracketed(self.address or self.host)}:{port or self.port}"

    @property
    def key_port(self) -> int:
        """The server's public-key port by convention."""
        return self.port + 2

    def __str__(self) -> str:
        return self.key


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


NameResolver = Callable[[str], "HostSpec | None"]
_name_resolver: NameResolver | None = None


def set_name_resolver(resolver: NameResolver | None) -> None:
    """Install (or with None remove) a lookup for bare names that are not addresses.

    It gets the lower-cased name and returns a HostSpec (with ``address`` set)
    or None to leave the name to DNS.
    """
    global _name_resolver  # one process-wide choice, made by the program
    _name_resolver = resolver


def parse_host(text: str) -> HostSpec:
    """Parse a HOST argument; raise ValueError with a readable message."""
    text = text.strip()
    if not text:
        raise ValueError("empty host")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not host:
            raise ValueError(f"{text!r}: unclosed [ in IPv6 address")
        port_text = rest[1:] if rest.startswith(":") else ("" if not rest else None)
        if port_text is None:
            raise ValueError(f"{text!r}: expected ]:PORT after an IPv6 address")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""  # a bare IPv6 address or a name
        if ":" in host:
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(f"{text!r}: not an IPv6 address; write [ADDRESS]:PORT or NAME:PORT") from None
    if not host or any(c.isspace() or c in "/@" for c in host):
        raise ValueError(f"{text!r}: not a host name or address")
    port = DEFAULT_PORT
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65534:
            raise ValueError(f"{text!r}: port must be a number from 1 to 65533")
        port = int(port_text)
    if not port_text and _name_resolver is not None and not is_address(host):
        found = _name_resolver(host.lower())
        if found is not None:
            return found
    return HostSpec(host.lower(), port)


def is_address(host: str) -> bool:
    """True for an IPv4 or IPv6 address (not a name)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True

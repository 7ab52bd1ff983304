"""Finding ssd hosts with zeroconf: browse ``_ssd._tcp.local.``, resolve, keep a live view.

An advertisement is a claim, not proof: anyone on the network can announce any
name and any fingerprint. Each host is marked against known hosts as
``trusted`` (the advertised fingerprint is the pinned one), ``new`` (nothing
pinned) or ``mismatched`` (a different key is pinned: shown loudly). Only the
CURVE handshake, made when connecting, proves who the server is.

Names: ``AsyncBrowser`` is the live view (its coroutines run in one loop);
``async_browse``, ``async_resolve_instance`` and ``async_resolve_name`` are
coroutines whose blocking twins ``browse``, ``resolve_instance`` and
``resolve_name`` serve scripts and ssd-ctl (the ``async_`` prefix means just
that, here as everywhere in ssd).
``SSD_DISCOVERY_INTERFACES`` (addresses, comma-separated) restricts the
interfaces zeroconf uses, as it does for the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import psutil
from zeroconf import (
    BadTypeInNameException,
    DNSQuestionType,
    InterfaceChoice,
    IPVersion,
    ServiceStateChange,
    Zeroconf,
    const,
)
from zeroconf._dns import DNSQuestion
from zeroconf._protocol.outgoing import DNSOutgoing
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from ssd.client.hostspec import HostSpec, set_name_resolver
from ssd.client.known_hosts import KnownHosts

__all__ = [
    "SERVICE_TYPE",
    "AsyncBrowser",
    "Change",
    "DiscoveredHost",
    "Trust",
    "async_browse",
    "async_resolve_instance",
    "async_resolve_name",
    "browse",
    "client_interfaces",
    "host_from_info",
    "install_name_resolver",
    "resolve_instance",
    "resolve_name",
]

log = logging.getLogger(__name__)

SERVICE_TYPE = "_ssd._tcp.local."
RESOLVE_TIMEOUT = 3.0  # seconds a lookup of one instance name waits for an answer
INTERFACES_VARIABLE = "SSD_DISCOVERY_INTERFACES"
# Multicast questions only: a unicast answer (QU) goes to port 5353, which every
# mDNS responder on this machine shares, so another process may get it.
QM = DNSQuestionType.QM


class Trust(enum.StrEnum):
    """What known hosts says about an advertised fingerprint (a claim until the handshake)."""

    TRUSTED = "trusted"
    NEW = "new"
    MISMATCHED = "mismatched"


@dataclass(frozen=True)
class DiscoveredHost:
    """One announced ssd daemon: its instance, where it listens and what its TXT record says."""

    name: str
    port: int
    addresses: tuple[str, ...]
    txt: Mapping[str, str] = field(default_factory=dict)
    trust: Trust = Trust.NEW
    pinned: str | None = None  # the fingerprint known hosts holds, if any
    local: bool = False  # one of the addresses is this machine's

    @property
    def address(self) -> str:
        """The address to connect to (IPv4 first)."""
        return self.addresses[0]

    @property
    def fingerprint(self) -> str:
        """The advertised server key fingerprint (a claim)."""
        return self.txt.get("fp", "")

    @property
    def spec(self) -> HostSpec:
        """Where to connect; known hosts pins it under the instance name."""
        return HostSpec(self.name.lower(), self.port, self.address)

    def number(self, key: str) -> float | None:
        """A numeric TXT value, or None when absent or malformed."""
        try:
            return float(self.txt[key])
        except (KeyError, ValueError):
            return None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description (``ssd-ctl discover --json``)."""
        return {
            "name": self.name,
            "address": self.address,
            "addresses": list(self.addresses),
            "port": self.port,
            "fingerprint": self.fingerprint,
            "trust": str(self.trust),
            "pinned_fingerprint": self.pinned,
            "local": self.local,
            "txt": dict(self.txt),
        }


@dataclass(frozen=True)
class Change:
    """A change in the live view."""

    kind: Literal["added", "updated", "removed"]
    host: DiscoveredHost


def client_interfaces(interfaces: list[str] | None = None) -> list[str | int] | InterfaceChoice:
    """The interfaces to browse on: *interfaces*, else ``SSD_DISCOVERY_INTERFACES``, else all."""
    if interfaces is None:
        text = os.environ.get(INTERFACES_VARIABLE, "")
        interfaces = [part.strip() for part in text.split(",") if part.strip()]
    if not interfaces or "all" in interfaces:
        return InterfaceChoice.All
    for value in interfaces:
        ipaddress.ip_address(value)  # ValueError names a bad entry
    return list(interfaces)


def _open_zeroconf(interfaces: list[str] | None) -> AsyncZeroconf:
    choice = client_interfaces(interfaces)
    return AsyncZeroconf(interfaces=choice, ip_version=IPVersion.V4Only if choice is InterfaceChoice.All else None)


def _local_addresses() -> set[str]:
    return {a.address.split("%")[0] for entries in psutil.net_if_addrs().values() for a in entries}


def _instance(service_name: str) -> str:
    return service_name.removesuffix("." + SERVICE_TYPE)


def _judge(
    name: str, port: int, addresses: tuple[str, ...], fingerprint: str, known: KnownHosts
) -> tuple[Trust, str | None]:
    """Compare the advertised fingerprint with what is pinned for the name (any port) or an address (this port)."""
    pinned = [e for a in addresses for e in known.pins_for(HostSpec(name.lower(), port, a))]
    if not pinned:
        return Trust.NEW, None
    mismatch = next((e for e in pinned if e.fingerprint != fingerprint), None)
    if mismatch is not None:
        return Trust.MISMATCHED, mismatch.fingerprint
    return Trust.TRUSTED, pinned[0].fingerprint


def host_from_info(info: AsyncServiceInfo, known: KnownHosts, local: set[str]) -> DiscoveredHost | None:
    """Build a DiscoveredHost from a resolved service; None when it lacks a port or an address."""
    addresses = tuple(info.parsed_scoped_addresses(IPVersion.V4Only) + info.parsed_scoped_addresses(IPVersion.V6Only))
    if not info.port or not addresses:
        return None
    txt = {k: v for k, v in info.decoded_properties.items() if v is not None}
    name = _instance(info.name)
    trust, pinned = _judge(name, info.port, addresses, txt.get("fp", ""), known)
    host = DiscoveredHost(name, info.port, addresses, txt, trust, pinned, bool(local.intersection(addresses)))
    if trust is Trust.MISMATCHED:
        log.warning(
            "%s at %s:%d advertises key %s but known hosts has %s: it may be an impostor "
            "(an advertisement proves nothing; connecting checks the real key)",
            name,
            host.address,
            host.port,
            host.fingerprint or "(none)",
            pinned,
        )
    return host


class AsyncBrowser:
    """A live view of the ssd hosts on the network: ``hosts`` plus added/updated/removed changes.

    Use ``async with AsyncBrowser() as view:`` and read ``view.hosts``, iterate
    ``view.changes()``, or pass *on_change* (called in the event loop).
    """

    def __init__(
        self,
        *,
        interfaces: list[str] | None = None,
        known_hosts: KnownHosts | None = None,
        on_change: Callable[[Change], None] | None = None,
    ) -> None:
        self.interfaces = interfaces
        self.known_hosts = known_hosts or KnownHosts()
        self.on_change = on_change
        self.hosts: dict[str, DiscoveredHost] = {}  # by fully qualified service name
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._queues: list[asyncio.Queue[Change]] = []
        self._resolving: dict[str, asyncio.Task[None]] = {}
        self._local = _local_addresses()

    async def __aenter__(self) -> AsyncBrowser:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Open zeroconf and start browsing; the first question goes out at once."""
        self._zc = _open_zeroconf(self.interfaces)
        await self._zc.zeroconf.async_wait_for_start()
        # A one-shot query now (RFC 6762 5.1); the browser's own continuous
        # querying starts 20-120 ms later and keeps the view live.
        query = DNSOutgoing(const._FLAGS_QR_QUERY)
        query.add_question(DNSQuestion(SERVICE_TYPE, const._TYPE_PTR, const._CLASS_IN))
        self._zc.zeroconf.async_send(query)
        self._browser = AsyncServiceBrowser(
            self._zc.zeroconf, SERVICE_TYPE, handlers=[self._on_state_change], question_type=QM
        )

    def _on_state_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            self._cancel_resolve(name)
            gone = self.hosts.pop(name, None)
            if gone is not None:
                self._emit(Change("removed", gone))
            return
        self._cancel_resolve(name)
        self._resolving[name] = asyncio.get_running_loop().create_task(self._resolve(name))

    def _cancel_resolve(self, name: str) -> None:
        task = self._resolving.pop(name, None)
        if task is not None:
            task.cancel()

    async def _resolve(self, name: str) -> None:
        assert self._zc is not None
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        try:
            found = await info.async_request(self._zc.zeroconf, int(RESOLVE_TIMEOUT * 1000), QM)
        finally:
            self._resolving.pop(name, None)
        host = host_from_info(info, self.known_hosts, self._local) if found else None
        if host is None:
            return
        old = self.hosts.get(name)
        if old == host:
            return
        self.hosts[name] = host
        self._emit(Change("updated" if old else "added", host))

    def _emit(self, change: Change) -> None:
        for queue in self._queues:
            queue.put_nowait(change)
        if self.on_change is not None:
            self.on_change(change)

    async def changes(self) -> AsyncIterator[Change]:
        """Yield every change from now on (first an ``added`` for each host already known)."""
        queue: asyncio.Queue[Change] = asyncio.Queue()
        for host in self.hosts.values():
            queue.put_nowait(Change("added", host))
        self._queues.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._queues.remove(queue)

    async def wait_until(self, predicate: Callable[[dict[str, DiscoveredHost]], bool], timeout: float) -> bool:
        """Wait until *predicate(hosts)* holds; tell whether it did within *timeout* seconds."""
        if predicate(self.hosts):
            return True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                async for _ in self.changes():
                    if predicate(self.hosts):
                        return True
        return False

    async def close(self) -> None:
        """Stop browsing, cancel lookups in progress and close zeroconf (no thread is left)."""
        for name in list(self._resolving):
            self._cancel_resolve(name)
        if self._browser is not None:
            await self._browser.async_cancel()
            self._browser = None
        if self._zc is not None:
            await self._zc.async_close()
            self._zc = None


async def async_browse(
    timeout: float, *, interfaces: list[str] | None = None, known_hosts: KnownHosts | None = None
) -> list[DiscoveredHost]:
    """Browse for *timeout* seconds; return the hosts found, sorted by name."""
    async with AsyncBrowser(interfaces=interfaces, known_hosts=known_hosts) as view:
        await asyncio.sleep(timeout)
        return sorted(view.hosts.values(), key=lambda h: (h.name.lower(), h.address))


def browse(
    timeout: float, *, interfaces: list[str] | None = None, known_hosts: KnownHosts | None = None
) -> list[DiscoveredHost]:
    """Blocking ``async_browse`` for scripts (not from inside a running event loop)."""
    return asyncio.run(async_browse(timeout, interfaces=interfaces, known_hosts=known_hosts))


async def async_resolve_instance(
    name: str,
    timeout: float = RESOLVE_TIMEOUT,
    *,
    interfaces: list[str] | None = None,
    known_hosts: KnownHosts | None = None,
) -> DiscoveredHost | None:
    """Look up the instance *name* (``NAME._ssd._tcp.local.``); None if nobody answers in time."""
    zc = _open_zeroconf(interfaces)
    try:
        info = AsyncServiceInfo(SERVICE_TYPE, f"{name}.{SERVICE_TYPE}")
        if not await info.async_request(zc.zeroconf, int(timeout * 1000), QM):
            return None
        return host_from_info(info, known_hosts or KnownHosts(), _local_addresses())
    except BadTypeInNameException:
        return None
    finally:
        await zc.async_close()


def resolve_instance(name: str, timeout: float = RESOLVE_TIMEOUT) -> DiscoveredHost | None:
    """Blocking ``async_resolve_instance`` (not from inside a running event loop)."""
    return asyncio.run(async_resolve_instance(name, timeout))


async def async_resolve_name(name: str) -> HostSpec | None:
    """DNS (or /etc/hosts) first, else mDNS: a bare *name* DNS does not know, found as an instance; else None."""
    try:
        await asyncio.get_running_loop().getaddrinfo(name, None, type=socket.SOCK_STREAM)
        return None
    except (OSError, UnicodeError):
        pass
    host = await async_resolve_instance(name)
    return None if host is None else HostSpec(name, host.port, host.address)


def resolve_name(name: str) -> HostSpec | None:
    """Blocking ``async_resolve_name`` (not from inside a running event loop)."""
    return asyncio.run(async_resolve_name(name))


def install_name_resolver() -> None:
    """Let every HOST argument be a discovered instance name too (ssd-ctl calls this at start).

    Rule: a HOST with an explicit port, or an address, is used as written; a
    bare name that resolves as a host name (DNS, /etc/hosts) is that host; any
    other bare name is looked up as ``NAME._ssd._tcp.local.`` and, when found,
    connects to its SRV port and address while known hosts pins it as
    ``NAME:PORT``.
    """
    set_name_resolver(resolve_name)

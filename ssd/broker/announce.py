"""Announcing this host with zeroconf: ``_ssd._tcp.local.``, SRV = control port, TXT = a summary.

The broker owns one ``Announcer``. It registers the service (probing, and
renaming on a conflict as mDNS says: ``name``, ``name-2``, ...), refreshes the
TXT record when the summary changes (at most once per ``txt_min_interval``),
re-announces when the interface addresses change and sends goodbye packets on
shutdown. The summary is not proof of anything: clients trust only the CURVE
handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import psutil
from zeroconf import InterfaceChoice, IPVersion, NonUniqueNameException
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from ssd import hostinfo
from ssd.errors import ConfigError
from ssd.protocol import PROTOCOL_VERSION

__all__ = [
    "MAX_INSTANCE_NAME",
    "SERVICE_TYPE",
    "AnnouncePlan",
    "Announcer",
    "check_instance_name",
    "check_txt",
    "plan_announcement",
    "summary_txt",
]

log = logging.getLogger(__name__)

SERVICE_TYPE = "_ssd._tcp.local."
MAX_TXT_STRING = 255  # one length byte per string in DNS
MAX_TXT_RECORD = 400  # RFC 6763 6.2: keep the whole record small, ideally one packet with the rest
MAX_INSTANCE_NAME = 63  # one DNS label

AddressTable = Mapping[str, list[tuple[str, bool]]]  # interface -> [(address, is_up)]


@dataclass(frozen=True)
class AnnouncePlan:
    """Where to announce: zeroconf's interfaces and the addresses put in A/AAAA records."""

    interfaces: tuple[str, ...] | None  # None = every interface (InterfaceChoice.All)
    addresses: tuple[str, ...]


def check_instance_name(name: str) -> str:
    """Return *name* if it can be an mDNS instance name; raise ConfigError otherwise."""
    size = len(name.encode())
    if not name or size > MAX_INSTANCE_NAME:
        raise ConfigError(
            f"server.name {name!r} cannot be announced: an instance name has 1 to {MAX_INSTANCE_NAME} bytes, "
            f"this one {size}; set a shorter server.name (or ssd run --name)"
        )
    if any(ord(c) < 0x20 or c == "\x7f" for c in name):
        raise ConfigError(f"server.name {name!r} cannot be announced: it holds control characters")
    return name


def check_txt(txt: Mapping[str, str]) -> dict[str, str]:
    """Return *txt* if every ``key=value`` string and the whole record are small enough; else ConfigError."""
    total = 0
    for key, value in txt.items():
        size = len(key.encode()) + 1 + len(value.encode())
        if size >= MAX_TXT_STRING:
            raise ConfigError(f"TXT entry {key}= is {size} bytes; a TXT string must stay under {MAX_TXT_STRING}")
        total += size + 1
    if total > MAX_TXT_RECORD:
        raise ConfigError(f"the TXT record would be {total} bytes; keep it under {MAX_TXT_RECORD}")
    return dict(txt)


def summary_txt(
    *,
    fingerprint: str,
    events_port: int,
    key_port: int,
    mode: str,
    kernels: int,
    description: str = "",
    transport: str = "curve",
    placements: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The TXT strings: protocol, key fingerprint, ports, mode and a host summary (short keys, small record)."""
    status = hostinfo.host_status()
    txt = {
        "proto": PROTOCOL_VERSION,
        "fp": fingerprint,
        "events": str(events_port),
        "keyport": str(key_port),
        "mode": mode,
        "os": str(status["os"]),
        "arch": str(status["arch"]),
        "cpus": str(status["cpus"]),
        "mem": str(int(status["memory_total"]) // 2**20),  # MiB
        "load": f"{status['load'][0]:.1f}",
        "kernels": str(kernels),
        "kt": transport,  # kernel channels: curve (encrypted relay) or plain
    }
    txt.update(placements or {})  # pl= where kernels may run, part= Slurm's partitions (ssd.kernels.placement)
    if description:
        txt["desc"] = description
    return txt


def _is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address.split("%")[0]).is_loopback


def _usable(address: str) -> bool:
    """Addresses worth announcing: not loopback, not IPv6 link-local (they need a scope to be reached)."""
    ip = ipaddress.ip_address(address.split("%")[0])
    return not ip.is_loopback and not (ip.version == 6 and ip.is_link_local)


def local_addresses() -> dict[str, list[tuple[str, bool]]]:
    """This machine's interface addresses (IPv4 and IPv6), with whether each interface is up."""
    stats = psutil.net_if_stats()
    table: dict[str, list[tuple[str, bool]]] = {}
    for name, entries in psutil.net_if_addrs().items():
        up = name in stats and stats[name].isup
        for entry in entries:
            if entry.family in (socket.AF_INET, socket.AF_INET6):
                table.setdefault(name, []).append((entry.address.split("%")[0], up))
    return table


def plan_announcement(interfaces: list[str], bind: str, table: AddressTable) -> AnnouncePlan:
    """Decide the interfaces and addresses to announce from config and the current addresses.

    Empty *interfaces* follows the bind address: a loopback bind announces on
    loopback only, ``*`` on every interface but loopback, another address on
    that address only. A loopback address is never put on a LAN interface.
    """
    if not interfaces:
        wildcard = bind in ("*", "0.0.0.0", "::")  # noqa: S104 (comparing, not binding)
        interfaces = ["all"] if wildcard else [bind]
    if "all" in interfaces:
        found = sorted({a for entries in table.values() for a, up in entries if up and _usable(a)}, key=_order)
        return AnnouncePlan(None, tuple(found))
    chosen = [a for a in interfaces if not _is_loopback(a)] or [a for a in interfaces if _is_loopback(a)]
    if len(chosen) != len(interfaces):
        log.warning("not announcing loopback addresses on a LAN interface: %s", sorted(set(interfaces) - set(chosen)))
    present = {a for entries in table.values() for a, up in entries if up}
    live = tuple(a for a in chosen if a in present)
    return AnnouncePlan(live, live)


def _order(address: str) -> tuple[int, str]:
    return (ipaddress.ip_address(address).version, address)


class Announcer:
    """Registers this host as ``NAME._ssd._tcp.local.`` and keeps the record current.

    The broker calls ``start`` after binding its ports and ``stop``
    on shutdown; ``run`` is a broker task. ``summary`` returns the TXT
    key/value strings; it is read again every refresh interval. *host_tag*
    (e.g. from the key fingerprint) makes the SRV target name unique.
    """

    def __init__(
        self,
        *,
        name: str,
        port: int,
        summary: Callable[[], dict[str, str]],
        interfaces: list[str],
        bind: str,
        refresh_interval: float,
        txt_min_interval: float,
        host_tag: str = "ssd",
        addresses: Callable[[], AddressTable] = local_addresses,
    ) -> None:
        self.name = check_instance_name(name)
        # The SRV target gets its own name: sharing the machine's NAME.local with
        # avahi (or with a same-named host elsewhere) would conflict or mix addresses.
        self.server = f"{_host_label(name)[:40]}-{_host_label(host_tag)[:16]}.local."
        self.port = port
        self.summary = summary
        self.refresh_interval = refresh_interval
        self.txt_min_interval = txt_min_interval
        self._config = (list(interfaces), bind)
        self._addresses = addresses
        self._txt = check_txt(summary())
        self._plan = plan_announcement(interfaces, bind, addresses())
        self._zc: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None
        self._last_update = 0.0
        self._wake = asyncio.Event()
        # Set once the service is registered (probing done): readiness for sd_notify waits on it.
        self.registered = asyncio.Event()

    @property
    def instance(self) -> str | None:
        """The registered instance name (it may have changed after a conflict), or None."""
        if self._info is None:
            return None
        return self._info.name.removesuffix("." + SERVICE_TYPE)

    async def start(self) -> None:
        """Open zeroconf on the planned interfaces and register (probing first)."""
        self._plan = plan_announcement(*self._config, self._addresses())
        if not self._plan.addresses:
            log.warning("no address to announce on yet (interfaces %s); will retry", self._config[0] or "from bind")
            return
        choice: list[str | int] | InterfaceChoice = (
            InterfaceChoice.All if self._plan.interfaces is None else list(self._plan.interfaces)
        )
        version = IPVersion.V4Only if self._plan.interfaces is None else None
        self._zc = AsyncZeroconf(interfaces=choice, ip_version=version)
        self._info = self._service_info(self.name)
        await self._zc.async_register_service(self._info, allow_name_change=True)
        self.registered.set()
        self._last_update = time.monotonic()
        if self.instance != self.name:
            log.warning("the name %r is taken on this network; announced as %r", self.name, self.instance)
        log.info("announced %s on %s", self._info.name, ", ".join(self._plan.addresses))

    def _service_info(self, instance: str) -> AsyncServiceInfo:
        return AsyncServiceInfo(
            SERVICE_TYPE,
            f"{instance}.{SERVICE_TYPE}",
            port=self.port,
            properties=dict(self._txt),
            server=self.server,
            parsed_addresses=list(self._plan.addresses),
        )

    def refresh_soon(self) -> None:
        """Ask for an early check of the summary (a kernel started or stopped); call it from the event loop only."""
        self._wake.set()

    async def run(self) -> None:
        """Broker task: register, then every refresh interval re-announce changed addresses or TXT."""
        while True:
            try:
                if self._zc is None:
                    await self.start()
                else:
                    await self._check()
            except (OSError, RuntimeError, NonUniqueNameException) as exc:
                # A vanished interface or a busy socket must not stop the broker.
                log.warning("zeroconf announcement failed (%s); retrying in %gs", exc, self.refresh_interval)
                await self.stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.refresh_interval)
            self._wake.clear()

    async def _check(self) -> None:
        plan = plan_announcement(*self._config, self._addresses())
        if plan != self._plan:
            log.info("interface addresses changed: %s -> %s", self._plan.addresses, plan.addresses)
            self._plan = plan
            await self._restart()
            return
        txt = self.summary()
        if txt == self._txt or self._info is None:
            return
        wait = self._last_update + self.txt_min_interval - time.monotonic()
        if wait > 0:  # coalesce: the latest summary goes out when the interval has passed
            await asyncio.sleep(wait)
            txt = self.summary()
        await self.update_txt(txt)

    async def update_txt(self, txt: dict[str, str]) -> None:
        """Announce a new TXT record now."""
        if self._zc is None or self._info is None:
            return
        self._txt = check_txt(txt)
        self._info = self._service_info(self.instance or self.name)
        await self._zc.async_update_service(self._info)
        self._last_update = time.monotonic()
        log.debug("TXT updated: %s", self._txt)

    async def _restart(self) -> None:
        """Goodbye on the old interfaces, then register again on the new ones."""
        await self.stop()
        await self.start()

    async def stop(self) -> None:
        """Send goodbye packets and close zeroconf (its sockets and tasks)."""
        zc, self._zc, self._info = self._zc, None, None
        if zc is not None:
            await zc.async_unregister_all_services()
            await zc.async_close()


def _host_label(instance: str) -> str:
    """A DNS host label for the SRV target, made from the instance name."""
    label = "".join(c if c.isascii() and (c.isalnum() or c == "-") else "-" for c in instance).strip("-")
    return (label or "ssd")[:MAX_INSTANCE_NAME]

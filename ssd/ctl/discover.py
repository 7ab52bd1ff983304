"""``ssd-ctl discover``: list the ssd hosts that announce themselves with zeroconf.

Usage: ``ssd-ctl discover [--timeout S] [--watch] [--json] [--interface ADDR]``.
Browses ``_ssd._tcp.local.`` for S seconds (default 2) and prints one row per
host: name, address:port, OS/arch, load, kernels and the trust state of the
advertised key (trusted, new, MISMATCHED). ``--watch`` keeps running and
prints each change; with ``--json`` every change is one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ssd.client.discovery import AsyncBrowser, Change, DiscoveredHost, Trust
from ssd.client.hostspec import HostSpec
from ssd.ctl.output import Output
from ssd.errors import ErrorCode, SSDError

__all__ = ["DEFAULT_TIMEOUT", "DISCOVER_COMMANDS", "add_parser", "cmd_discover"]

DEFAULT_TIMEOUT = 2.0
COLUMNS = ["name", "address", "system", "load", "kernels", "trust"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add ``discover`` to ssd-ctl's parser."""
    parser = sub.add_parser("discover", parents=[common], help="find ssd hosts on the network (zeroconf)")
    parser.add_argument("--watch", action="store_true", help="keep running and show hosts as they come and go")
    parser.add_argument(
        "--interface",
        action="append",
        metavar="ADDR",
        help="browse only on the interface with this address (repeatable; default: all, or $SSD_DISCOVERY_INTERFACES)",
    )


def cmd_discover(args: argparse.Namespace, out: Output) -> int:
    """ssd-ctl discover: a table of announced hosts, or a stream of changes with --watch."""
    if args.timeout < 0:
        raise SSDError("--timeout must not be negative", code=ErrorCode.USAGE)
    try:
        return asyncio.run(_discover(args, out))
    except ValueError as exc:  # a malformed interface address
        raise SSDError(f"--interface: {exc}", code=ErrorCode.USAGE) from None


async def _discover(args: argparse.Namespace, out: Output) -> int:
    async with AsyncBrowser(interfaces=args.interface) as view:
        await asyncio.sleep(args.timeout)
        hosts = sorted(view.hosts.values(), key=lambda h: (h.name.lower(), h.address))
        for host in hosts:
            _warn(host, out)
        if not args.watch:
            if args.json:
                out.document({"hosts": [h.as_dict() for h in hosts]})
            else:
                _table(hosts, out)
            return 0
        if not args.json:
            _table(hosts, out)
        async for change in view.changes():
            listed = change.kind == "added" and change.host in hosts  # already shown (and warned about)
            if not listed and change.kind != "removed":
                _warn(change.host, out)
            if not listed or args.json:
                _show(change, args.json, out)
    return 0


def _table(hosts: list[DiscoveredHost], out: Output) -> None:
    if not hosts:
        out.say("no ssd hosts found")
        return
    out.table(COLUMNS, [_row(h) for h in hosts])


def _row(host: DiscoveredHost) -> list[Any]:
    txt = host.txt
    name = host.name + (" (this machine)" if host.local else "")
    system = "/".join(v for v in (txt.get("os", ""), txt.get("arch", "")) if v) or "?"
    trust = "MISMATCHED" if host.trust is Trust.MISMATCHED else str(host.trust)
    address = HostSpec(host.address, host.port).key
    kernels = txt.get("kernels", "?") + (" (plain)" if txt.get("kt") == "plain" else "")
    return [name, address, system, txt.get("load", "?"), kernels, trust]


def _show(change: Change, as_json: bool, out: Output) -> None:
    if as_json:
        out.line({"event": change.kind, "host": change.host.as_dict()})
        return
    mark = {"added": "+", "updated": "~", "removed": "-"}[change.kind]
    name, address, system, load, kernels, trust = _row(change.host)
    out.say(f"{mark} {name} {address} {system} load={load} kernels={kernels} {trust}")


def _warn(host: DiscoveredHost, out: Output) -> None:
    if host.trust is Trust.MISMATCHED:
        out.err.print(
            f"WARNING: {host.name} at {HostSpec(host.address, host.port).key} advertises key "
            f"{host.fingerprint or '(none)'}, but known hosts pins {host.pinned}. It may be an impostor. "
            "An advertisement proves nothing: connecting checks the real key and refuses a changed one.",
            markup=False,
            style="bold red",
        )


DISCOVER_COMMANDS = {"discover": cmd_discover}

"""ssd-ctl envs: the environments the logged-in user has on a host."""

from __future__ import annotations

import argparse
from typing import Any

from ssd.ctl.commands import connected
from ssd.ctl.output import Output

__all__ = ["ENV_COMMANDS", "add_parser"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add ``envs`` to ssd-ctl's parser."""
    envs = sub.add_parser("envs", parents=[common], help="list your environments on HOST (after a login)")
    envs.add_argument("host", metavar="HOST", help="server as HOST[:PORT], an address or a discovered name")


def cmd_envs(args: argparse.Namespace, out: Output) -> int:
    """Table: name, kind, python, spyder-kernels, ipykernel, ready for Spyder, writable, prefix."""
    with connected(args, out) as client:
        envs: list[dict[str, Any]] = client.request("env_list_request")["envs"]
    if args.json:
        out.document({"host": args.host, "envs": envs})
        return 0
    columns = ["name", "kind", "python", "spyder-kernels", "ipykernel", "Spyder", "writable", "prefix"]
    rows = [
        (
            e["name"],
            e["kind"],
            e["python"] or "-",
            e["spyder_kernels"] or "-",
            e["ipykernel"] or "-",
            ", ".join(e["spyder_versions"]) if e["spyder_ready"] else "no",
            "yes" if e["writable"] else "no",
            e["prefix"],
        )
        for e in envs
    ]
    out.table(columns, rows, title=f"environments on {args.host}")
    return 0


ENV_COMMANDS = {"envs": cmd_envs}

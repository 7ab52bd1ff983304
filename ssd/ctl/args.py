"""The arguments every ssd-ctl command shares: the options after the command, and HOST."""

from __future__ import annotations

import argparse

__all__ = ["HOST_HELP", "add_host", "common_options"]

HOST_HELP = "server as HOST[:PORT], an address ([v6]:PORT) or a discovered name; default port 9470"


def common_options() -> argparse.ArgumentParser:
    """--json, --timeout and --trust: the parent parser of every command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    common.add_argument(
        "--timeout", type=float, default=None, metavar="S", help="seconds to wait (default 10; discover: 2)"
    )
    common.add_argument("--trust", action="store_true", help="pin the server's key on first contact without asking")
    return common


def add_host(parser: argparse.ArgumentParser) -> None:
    """The HOST positional argument."""
    parser.add_argument("host", metavar="HOST", help=HOST_HELP)

"""``ssd-ctl``: the command-line client.

Exit codes scripts can trust: 0 ok, 1 error reply from the server, 2 usage,
3 unreachable or timeout, 4 trust failure (unknown or changed server key).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ssd import __version__
from ssd.client.discovery import install_name_resolver
from ssd.ctl.commands import COMMANDS
from ssd.ctl.console import CONSOLE_COMMANDS
from ssd.ctl.console import add_parser as add_console_parser
from ssd.ctl.discover import DEFAULT_TIMEOUT as DISCOVER_TIMEOUT
from ssd.ctl.discover import DISCOVER_COMMANDS
from ssd.ctl.discover import add_parser as add_discover_parser
from ssd.ctl.envs import ENV_COMMANDS, add_admin_parser
from ssd.ctl.envs import add_parser as add_envs_parser
from ssd.ctl.kernels import KERNEL_COMMANDS
from ssd.ctl.kernels import add_parsers as add_kernel_parsers
from ssd.ctl.kernelspec import KERNELSPEC_COMMANDS
from ssd.ctl.kernelspec import add_parser as add_kernelspec_parser
from ssd.ctl.output import Output
from ssd.ctl.sessions import SESSION_COMMANDS, add_parsers
from ssd.ctl.tunnel import TUNNEL_COMMANDS
from ssd.ctl.tunnel import add_parser as add_tunnel_parser
from ssd.errors import SSDError

__all__ = ["main"]

EXIT_USAGE = 2
DEFAULT_TIMEOUT = 10.0  # seconds a command waits for a reply unless --timeout says otherwise
HOST_HELP = "server as HOST[:PORT], an address ([v6]:PORT) or a discovered name; default port 9470"


def main(argv: list[str] | None = None) -> int:
    """Run ssd-ctl; return its exit code."""
    args = build_parser().parse_args(argv)
    if args.timeout is None:  # a per-command default (the option object is shared by every command)
        args.timeout = DISCOVER_TIMEOUT if args.command == "discover" else DEFAULT_TIMEOUT
    if args.ca_file:  # every client this process makes verifies certificates with it (ssd.paths.client_ca_file)
        os.environ["SSD_CA_FILE"] = args.ca_file
    logging.basicConfig(level=logging.WARNING, format="ssd-ctl: %(message)s")
    out = Output(args.json)
    install_name_resolver()  # HOST may be a discovered instance name
    try:
        handlers = {
            **COMMANDS,
            **SESSION_COMMANDS,
            **DISCOVER_COMMANDS,
            **ENV_COMMANDS,
            **KERNEL_COMMANDS,
            **CONSOLE_COMMANDS,
            **KERNELSPEC_COMMANDS,
            **TUNNEL_COMMANDS,
        }
        code: int = handlers[args.command](args, out)
        return code
    except SSDError as exc:
        if args.json:
            out.document({"error": exc.code, "message": exc.message})
        out.error(exc.message)
        return EXIT_USAGE if exc.code == "usage" else exc.exit_code
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    common.add_argument(
        "--timeout", type=float, default=None, metavar="S", help="seconds to wait (default 10; discover: 2)"
    )
    common.add_argument("--trust", action="store_true", help="pin the server's key on first contact without asking")

    parser = argparse.ArgumentParser(
        prog="ssd-ctl",
        description="Talk to ssd daemons: find hosts, log in, see environments, start and reach kernels.",
        epilog="Options --json, --timeout and --trust go after the command. "
        "Exit codes: 0 ok, 1 error reply, 2 usage, 3 unreachable/timeout, 4 trust failure.",
    )
    parser.add_argument("--version", action="version", version=f"ssd-ctl {__version__}")
    parser.add_argument(
        "--ca-file",
        metavar="FILE",
        help="verify servers by their certificate against this CA (PEM) instead of known hosts "
        "(default: $SSD_CA_FILE, else ca.pem in the client directory if present)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = sub.add_parser("info", parents=[common], help="show a server's identity, version and status")
    info.add_argument("host", metavar="HOST", help=HOST_HELP)

    ping = sub.add_parser("ping", parents=[common], help="measure round-trip times")
    ping.add_argument("host", metavar="HOST", help=HOST_HELP)
    ping.add_argument("--count", "-c", type=int, default=4, metavar="N", help="number of pings (default 4)")
    ping.add_argument("--interval", "-i", type=float, default=0.2, metavar="S", help="pause between pings")
    ping.add_argument(
        "--worker",
        action="store_true",
        help="go through the diagnostic worker (needs [workers] diag = true and a login)",
    )

    trust = sub.add_parser("trust", parents=[common], help="pin a server's key after showing its fingerprint")
    trust.add_argument("host", metavar="HOST", help=HOST_HELP)
    trust.add_argument("--replace", action="store_true", help="replace a pinned key that changed")

    known = sub.add_parser("known-hosts", parents=[common], help="list pinned servers")
    known.add_argument("--forget", metavar="HOST", help="remove HOST from known hosts")

    keygen = sub.add_parser("keygen", parents=[common], help="make or show this client's key")
    keygen.add_argument("--force", action="store_true", help="replace the key (the old one is kept as *.old)")

    watch = sub.add_parser("watch", parents=[common], help="print the server's events as they happen")
    watch.add_argument("host", metavar="HOST", help=HOST_HELP)
    watch.add_argument("--topic", action="append", metavar="T", help="only this topic (repeatable)")
    watch.add_argument("--count", type=int, default=0, metavar="N", help="stop after N events")

    add_parsers(sub, common)
    add_discover_parser(sub, common)
    add_envs_parser(sub, common)
    add_admin_parser(sub, common)
    add_kernel_parsers(sub, common)
    add_console_parser(sub, common)
    add_kernelspec_parser(sub, common)
    add_tunnel_parser(sub, common)
    return parser


if __name__ == "__main__":
    sys.exit(main())

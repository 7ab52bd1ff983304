"""``ssd-ctl``: the command-line client.

Exit codes scripts can trust: 0 ok, 1 an error (the server's reply, or this
machine's: a file, a socket), 2 usage, 3 unreachable or timeout, 4 trust
failure (unknown or changed server key), 130 interrupted (Ctrl-C). Whatever
goes wrong is said in one line (``report``), never as a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ssd import __version__
from ssd.client.discovery import install_name_resolver
from ssd.ctl.args import common_options
from ssd.ctl.commands import COMMANDS
from ssd.ctl.commands import add_parsers as add_command_parsers
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
from ssd.ctl.sessions import SESSION_COMMANDS
from ssd.ctl.sessions import add_parsers as add_session_parsers
from ssd.ctl.tunnel import TUNNEL_COMMANDS
from ssd.ctl.tunnel import add_parser as add_tunnel_parser
from ssd.errors import ErrorCode, SSDError, translate

__all__ = ["main", "report"]

log = logging.getLogger(__name__)

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # as a shell reports SIGINT
DEFAULT_TIMEOUT = 10.0  # seconds a command waits for a reply unless --timeout says otherwise


def main(argv: list[str] | None = None) -> int:
    """Run ssd-ctl; return its exit code."""
    args = build_parser().parse_args(argv)
    if args.timeout is None:  # a per-command default (the option object is shared by every command)
        args.timeout = DISCOVER_TIMEOUT if args.command == "discover" else DEFAULT_TIMEOUT
    if args.ca_file:  # every client this process makes verifies certificates with it (ssd.paths.client_ca_file)
        os.environ["SSD_CA_FILE"] = args.ca_file
    logging.basicConfig(level=logging.WARNING, format="ssd-ctl: %(message)s")
    out = Output(args.json)
    try:
        install_name_resolver()  # HOST may be a discovered instance name
        code: int = HANDLERS[args.command](args, out)
        return code
    except KeyboardInterrupt:
        out.error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # the one place where an error becomes a message and an exit code
        return report(exc, out)


def report(exc: Exception, out: Output) -> int:
    """Say what went wrong (one JSON document too with --json); return the exit code scripts rely on."""
    error = translate(exc)
    if error is None:  # a bug: said in a line, the traceback only in the debug log
        log.debug("unexpected error", exc_info=exc)
        error = SSDError(f"internal error ({type(exc).__name__}: {exc}); please report it")
    if out.as_json:
        out.document({"error": error.code, "message": error.message})
    out.error(error.message)
    return EXIT_USAGE if error.code == ErrorCode.USAGE else error.exit_code


HANDLERS = {
    **COMMANDS,
    **SESSION_COMMANDS,
    **DISCOVER_COMMANDS,
    **ENV_COMMANDS,
    **KERNEL_COMMANDS,
    **CONSOLE_COMMANDS,
    **KERNELSPEC_COMMANDS,
    **TUNNEL_COMMANDS,
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    common = common_options()

    parser = argparse.ArgumentParser(
        prog="ssd-ctl",
        description="Talk to ssd daemons: find hosts, log in, see environments, start and reach kernels.",
        epilog="Options --json, --timeout and --trust go after the command. "
        "Exit codes: 0 ok, 1 error, 2 usage, 3 unreachable/timeout, 4 trust failure, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"ssd-ctl {__version__}")
    parser.add_argument(
        "--ca-file",
        metavar="FILE",
        help="verify servers by their certificate against this CA (PEM) instead of known hosts "
        "(default: $SSD_CA_FILE, else ca.pem in the client directory if present)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_command_parsers(sub, common)
    add_session_parsers(sub, common)
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

"""ssd-ctl login, logout, whoami and copy-id: sessions bind this client's key to a user."""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
import time
from typing import Any

from ssd import protocol
from ssd.client import Client
from ssd.ctl.commands import connected
from ssd.ctl.output import Output
from ssd.errors import RemoteError, SSDError

__all__ = ["SESSION_COMMANDS", "add_parsers"]


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add the session commands to ssd-ctl's parser."""
    host_help = "server as HOST[:PORT] or an address"
    login = sub.add_parser("login", parents=[common], help="log in: bind this client's key to a user on HOST")
    login.add_argument("host", metavar="HOST", help=host_help)
    login.add_argument("--user", "-u", default=getpass.getuser(), help="user name on HOST (default: yours here)")
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")
    login.add_argument("--key-only", action="store_true", help="only try this client's authorized key, never ask")
    for name, text in (
        ("logout", "end this client's session on HOST"),
        ("whoami", "show the user this client is logged in as on HOST"),
        ("copy-id", "authorize this client's key for your user on HOST (after a login)"),
    ):
        sub.add_parser(name, parents=[common], help=text).add_argument("host", metavar="HOST", help=host_help)


def cmd_login(args: argparse.Namespace, out: Output) -> int:
    """Log in with the authorized key if it is one, else with a password (prompted without echo)."""
    with connected(args, out) as client:
        reply = None
        if not args.password_stdin:
            reply = _try_key(client, args.user)
        if reply is None:
            if args.key_only:
                raise SSDError(f"this client's key is not authorized for {args.user}", code=protocol.AUTH_FAILED)
            reply = client.login(args.user, _password(args))
    expires = float(reply["expires"])
    if args.json:
        out.document({"user": reply["user"], "method": reply["method"], "expires": expires})
    else:
        out.say(f"logged in to {args.host} as {reply['user']} ({reply['method']}) until {_when(expires)}")
    return 0


def _try_key(client: Client, user: str) -> dict[str, Any] | None:
    try:
        return client.login(user)
    except RemoteError as exc:
        if exc.code == protocol.AUTH_FAILED:
            return None
        raise


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.user} on {args.host}: ")
    else:
        raise SSDError("no terminal to ask for a password: use --password-stdin", code="usage")
    if not password:
        raise SSDError("empty password", code="usage")
    return password


def cmd_logout(args: argparse.Namespace, out: Output) -> int:
    """End the session."""
    with connected(args, out) as client:
        ended = client.logout()["ended"]
    if args.json:
        out.document({"ended": ended})
    else:
        out.say(f"logged out of {args.host}")
    return 0


def cmd_whoami(args: argparse.Namespace, out: Output) -> int:
    """Show the bound user and the session's end."""
    with connected(args, out) as client:
        reply = client.whoami()
    if args.json:
        out.document({"user": reply["user"], "since": reply["since"], "expires": reply["expires"]})
    else:
        out.say(f"{reply['user']} on {args.host}, session until {_when(float(reply['expires']))}")
    return 0


def cmd_copy_id(args: argparse.Namespace, out: Output) -> int:
    """Add this client's key to the logged-in user's authorized keys on the server."""
    with connected(args, out) as client:
        reply = client.key_add(f"added by ssd-ctl copy-id from {getpass.getuser()}@{_local_name()}")
    if args.json:
        out.document({"user": reply["user"], "file": reply["file"], "added": reply["added"]})
    elif reply["added"]:
        out.say(f"this client's key now logs in as {reply['user']} on {args.host} without a password")
    else:
        out.say(f"this client's key was already authorized for {reply['user']} on {args.host}")
    return 0


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def _local_name() -> str:
    return socket.gethostname()


SESSION_COMMANDS = {"login": cmd_login, "logout": cmd_logout, "whoami": cmd_whoami, "copy-id": cmd_copy_id}

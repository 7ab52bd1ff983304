"""ssd-ctl login, logout, whoami, copy-id and revoke-id: sessions bind this client's key to a user."""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
import time

from ssd.client import Client
from ssd.ctl.args import add_host
from ssd.ctl.commands import connected
from ssd.ctl.output import Output
from ssd.errors import ErrorCode, RemoteError, SSDError
from ssd.replies import LoginReply

__all__ = ["SESSION_COMMANDS", "add_parsers"]


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add the session commands to ssd-ctl's parser."""
    login = sub.add_parser("login", parents=[common], help="log in: bind this client's key to a user on HOST")
    add_host(login)
    login.add_argument("--user", "-u", default=getpass.getuser(), help="user name on HOST (default: yours here)")
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")
    login.add_argument("--key-only", action="store_true", help="only try this client's authorized key, never ask")
    for name, text in (
        ("logout", "end this client's session on HOST"),
        ("whoami", "show the user this client is logged in as on HOST"),
        ("copy-id", "authorize this client's key for your user on HOST (after a login)"),
    ):
        add_host(sub.add_parser(name, parents=[common], help=text))
    revoke = sub.add_parser(
        "revoke-id",
        parents=[common],
        help="remove this client's key (or KEY, or --all) from your authorized keys on HOST",
    )
    add_host(revoke)
    which = revoke.add_mutually_exclusive_group()
    which.add_argument(
        "key", metavar="KEY", nargs="?", help="a client public key (see: ssd-ctl keygen); default: this one"
    )
    which.add_argument("--all", action="store_true", help="every key in your authorized keys file there")


def cmd_login(args: argparse.Namespace, out: Output) -> int:
    """Log in with the authorized key if it is one, else with a password (prompted without echo)."""
    with connected(args, out) as client:
        reply = None
        if not args.password_stdin:
            reply = _try_key(client, args.user)
        if reply is None:
            if args.key_only:
                raise SSDError(f"this client's key is not authorized for {args.user}", code=ErrorCode.AUTH_FAILED)
            reply = client.login(args.user, _password(args))
    expires = float(reply.expires or 0)
    if args.json:
        out.document({"user": reply.user, "method": reply.method, "expires": expires})
    else:
        out.say(f"logged in to {args.host} as {reply.user} ({reply.method}) until {_when(expires)}")
    return 0


def _try_key(client: Client, user: str) -> LoginReply | None:
    try:
        return client.login(user)
    except RemoteError as exc:
        if exc.code == ErrorCode.AUTH_FAILED:
            return None
        raise


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.user} on {args.host}: ")
    else:
        raise SSDError("no terminal to ask for a password: use --password-stdin", code=ErrorCode.USAGE)
    if not password:
        raise SSDError("empty password", code=ErrorCode.USAGE)
    return password


def cmd_logout(args: argparse.Namespace, out: Output) -> int:
    """End the session; say so when the key is still authorized (a running Jupyter then logs in again)."""
    with connected(args, out) as client:
        authorized = _still_authorized(client)
        ended = client.logout().ended
    if args.json:
        out.document({"ended": ended, "key_authorized": authorized})
        return 0
    out.say(f"logged out of {args.host}")
    if authorized:
        out.say(
            "This client's key is still authorized there: a running Jupyter or Spyder logs in again by key.\n"
            f"Revoke it with:\n    ssd-ctl revoke-id {args.host}"
        )
    return 0


def _still_authorized(client: Client) -> bool | None:
    """Is this client's key authorized for its user (None: an older server cannot tell)?"""
    try:
        return client.key_remove(dry_run=True).authorized
    except RemoteError as exc:
        if exc.code in (ErrorCode.BAD_REQUEST, ErrorCode.UNKNOWN_MESSAGE_TYPE):
            return None
        raise


def cmd_whoami(args: argparse.Namespace, out: Output) -> int:
    """Show the bound user and the session's end."""
    with connected(args, out) as client:
        reply = client.whoami()
    if args.json:
        out.document({"user": reply.user, "since": reply.since, "expires": reply.expires})
    else:
        out.say(f"{reply.user} on {args.host}, session until {_when(reply.expires)}")
    return 0


def cmd_copy_id(args: argparse.Namespace, out: Output) -> int:
    """Add this client's key to the logged-in user's authorized keys on the server."""
    with connected(args, out) as client:
        reply = client.key_add(f"added by ssd-ctl copy-id from {getpass.getuser()}@{_local_name()}")
    if args.json:
        out.document({"user": reply.user, "file": reply.file, "added": reply.added})
    elif reply.added:
        out.say(f"this client's key now logs in as {reply.user} on {args.host} without a password")
    else:
        out.say(f"this client's key was already authorized for {reply.user} on {args.host}")
    return 0


def cmd_revoke_id(args: argparse.Namespace, out: Output) -> int:
    """Remove a key (this client's by default) or all keys from the user's authorized keys on the server."""
    with connected(args, out) as client:
        reply = client.key_remove(args.key, all_keys=args.all)
    if args.json:
        out.document({k: getattr(reply, k) for k in ("user", "file", "removed", "authorized", "admin_file")})
        return 0
    which = "every key" if args.all else "the key" if args.key else "this client's key"
    count = f"{reply.removed} key{'s' * (reply.removed != 1)}"
    out.say(f"removed {count} from {reply.user}'s authorized keys on {args.host} ({which}, {reply.file})")
    if reply.admin_file:
        out.say(f"It is still authorized by the administrator's file {reply.admin_file}: ask them to remove it.")
    elif not args.all and not args.key:
        out.say("This session goes on until ssd-ctl logout; after it, this client needs a password to log in.")
    return 0


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def _local_name() -> str:
    return socket.gethostname()


SESSION_COMMANDS = {
    "login": cmd_login,
    "logout": cmd_logout,
    "whoami": cmd_whoami,
    "copy-id": cmd_copy_id,
    "revoke-id": cmd_revoke_id,
}

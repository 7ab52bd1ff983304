"""ssd-ctl tunnel (and start --tunnel): a kernel's encrypted channels on this machine, for this user only.

For Spyder's "Connect to an existing kernel" dialog, qtconsole, older
jupyter_client and any frontend that reads only classic connection files.
The local end is ``ipc`` sockets in a 0700 folder (``--tcp``: 127.0.0.1,
open to every local user, for a frontend that takes only TCP).
Runs until Ctrl-C (or SIGTERM), reports when the link to the host drops and
comes back, and removes its connection file at the end (the ports die with it).
A tunnel reopened for the same (host, kernel) binds the same endpoints and
writes the same file, so a frontend that kept it reconnects by itself
(``ssd.client.tunnelstate``); a TCP port taken meanwhile is said so.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from ssd.client import Client, tunnelstate
from ssd.client.kernels import write_connection_file
from ssd.client.tunnel import DEFAULT_TRANSPORT, Tunnel
from ssd.ctl.args import add_host
from ssd.ctl.commands import connected
from ssd.ctl.connfiles import tunnel_file
from ssd.ctl.kernelargs import KERNEL_HELP, SHORT, TCP_HELP, resolve
from ssd.ctl.output import Output
from ssd.errors import ErrorCode, SSDError

__all__ = ["TUNNEL_COMMANDS", "add_parser", "run_tunnel", "tunnel_file"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add ``tunnel`` to ssd-ctl's parser."""
    tunnel = sub.add_parser(
        "tunnel", parents=[common], help="forward a kernel's encrypted channels to this machine (for Spyder)"
    )
    add_host(tunnel)
    tunnel.add_argument("kernel", metavar="KERNEL", help=KERNEL_HELP)
    tunnel.add_argument(
        "--connection-file", metavar="PATH", help="the classic file to write (default: Jupyter's runtime dir)"
    )
    tunnel.add_argument("--tcp", action="store_true", help=TCP_HELP.removeprefix("with --tunnel: "))


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_tunnel(out: Output, host: str, kernel_id: str, remote: dict[str, Any], path: Path, *, tcp: bool = False) -> int:
    """Open the tunnel on the endpoints of the last one, write its file, report link changes until stopped."""
    with tunnelstate.held(host, kernel_id):
        tunnel = _open(host, kernel_id, remote, "tcp" if tcp else DEFAULT_TRANSPORT)
        try:
            write_connection_file(path, tunnel.local_info())
            _announce(out, host, kernel_id, path, tunnel)
            with _sigterm_as_interrupt(), contextlib.suppress(KeyboardInterrupt):
                while True:
                    for change in tunnel.poll_status(0.5):
                        _report(out, host, change)
        finally:
            tunnel.stop()
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    if not out.as_json:
        out.say(f"tunnel closed; stop the kernel with: ssd-ctl stop {host} {kernel_id[:SHORT]}")
    return 0


def _open(host: str, kernel_id: str, remote: dict[str, Any], transport: str) -> Tunnel:
    """A started tunnel on the endpoints the last tunnel to (host, kernel) used, remembered for the next one."""
    last = tunnelstate.load(host, kernel_id)
    ports = last.ports if last is not None and last.transport == transport == "tcp" else None
    folder = tunnelstate.socket_dir(tunnelstate.tunnel_key(host, kernel_id)) if transport == "ipc" else None
    try:
        tunnel = Tunnel(remote, transport=transport, socket_dir=folder, ports=ports)
    except ValueError as exc:
        raise SSDError(str(exc), code=ErrorCode.USAGE) from None
    tunnel.start()
    tunnelstate.save(tunnelstate.TunnelRecord(host, kernel_id, transport, dict(tunnel.ports)))  # type: ignore[arg-type]
    return tunnel


def _announce(out: Output, host: str, kernel_id: str, path: Path, tunnel: Tunnel) -> None:
    if tunnel.moved:
        moved = ", ".join(f"{channel} (now {tunnel.ports[channel]})" for channel in tunnel.moved)
        out.err.print(
            f"ssd-ctl: the last tunnel's ports for {moved} are taken by another program: a frontend that kept "
            f"the old connection file must reconnect with {path}",
            markup=False,
        )
    if out.as_json:
        out.document({"host": host, "kernel_id": kernel_id, "connection_file": str(path), "state": "running"})
        return
    out.say(f"tunnel to kernel {kernel_id[:SHORT]} on {host} is open {_where(tunnel)}")
    out.say(f"connection file: {path}  (Spyder: Consoles > Connect to an existing kernel)")
    out.say("Ctrl-C stops the tunnel; the kernel keeps running")


def _where(tunnel: Tunnel) -> str:
    if tunnel.transport == "ipc":
        return "on sockets only you can open"
    return "on 127.0.0.1 (TCP: any user of this machine can connect and read the kernel's output)"


def _report(out: Output, host: str, change: str) -> None:
    """Link changes on stderr, so that stdout (and --json) stays clean."""
    text = {
        "lost": f"connection to {host} lost; reconnecting...",
        "reconnected": f"reconnected to {host}",
    }.get(change, f"connected to {host} (encrypted)")
    out.err.print(f"ssd-ctl: {text}", markup=False)


def cmd_tunnel(args: argparse.Namespace, out: Output) -> int:
    """Look the kernel up, then forward its channels until stopped."""
    with connected(args, out) as client:
        kernel_id = resolve(client, args)
        remote = _remote_info(client, kernel_id)
    path = tunnel_file(kernel_id, args.connection_file)
    return run_tunnel(out, args.host, kernel_id, remote, path, tcp=args.tcp)


def _remote_info(client: Client, kernel_id: str) -> dict[str, Any]:
    return client.connection_info(client.kernel_info(kernel_id).connection)


TUNNEL_COMMANDS = {"tunnel": cmd_tunnel}

"""ssd-ctl start, kernels, stop, interrupt, restart and attach: your kernels on a host (console: ssd.ctl.console).

A kernel's connection file is written on this machine with only the classic
keys (``ssd.kernels.connection.CLASSIC_KEYS``), 0600, so that Spyder's
"Connect to an existing kernel" dialog, ``jupyter console --existing`` and
any jupyter_client accept it. The HMAC key goes into that file and nowhere
else: never on stdout, not even with ``--json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_runtime_dir
from rich.table import Table
from rich.text import Text

from ssd.client import Client
from ssd.client.kernels import START_TIMEOUT, write_connection_file
from ssd.ctl.commands import connected
from ssd.ctl.output import Output
from ssd.errors import SSDError

__all__ = [
    "KERNEL_COMMANDS",
    "add_parsers",
    "choose_connection_file",
    "remove_default_files",
    "resolve_kernel",
    "say_started",
    "shutdown_kernel",
    "start_kernel",
    "start_options",
    "started_document",
    "write_connection",
]

KINDS = ("spyder", "ipykernel")
HOST_HELP = "server as HOST[:PORT], an address or a discovered name"
KERNEL_HELP = "kernel id, a unique start of one, or the kernel's name (see: ssd-ctl kernels HOST)"
SHORT = 8  # characters of a kernel id shown in tables and hints
SHUTDOWN_TIMEOUT = 30.0
TCP_HELP = (
    "with --tunnel: TCP on 127.0.0.1 instead of sockets only you can open (any local user can then "
    "read the kernel's output); for frontends that do not take transport ipc"
)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add the kernel commands to ssd-ctl's parser."""
    start = sub.add_parser("start", parents=[common], help="start a kernel in ENV on HOST, write its connection file")
    start.add_argument("host", metavar="HOST", help=HOST_HELP)
    start.add_argument("env", metavar="ENV", help="environment name or prefix (see: ssd-ctl envs HOST)")
    start_options(start)
    start.add_argument("--connection-file", metavar="PATH", help="where to write it (default: Jupyter's runtime dir)")
    start.add_argument(
        "--tunnel",
        action="store_true",
        help="then keep a local tunnel open and write a classic file for it (Spyder; until Ctrl-C)",
    )
    start.add_argument("--tcp", action="store_true", help=TCP_HELP)

    kernels = sub.add_parser("kernels", parents=[common], help="list your kernels on HOST")
    kernels.add_argument("host", metavar="HOST", help=HOST_HELP)

    for name, text in (
        ("stop", "shut a kernel down (politely, then by force)"),
        ("interrupt", "interrupt the code a kernel is running"),
        ("restart", "restart a kernel: a new process, the same id, ports and key"),
        ("detach", "keep a kernel its frontend (Jupyter, Spyder) started running after that frontend ends"),
    ):
        command = sub.add_parser(name, parents=[common], help=text)
        command.add_argument("host", metavar="HOST", help=HOST_HELP)
        command.add_argument("kernel", metavar="KERNEL", help=KERNEL_HELP)
        if name == "interrupt":
            command.add_argument("--mode", choices=["signal", "message"], help="default: as the kernelspec says")

    attach = sub.add_parser("attach", parents=[common], help="write a running kernel's connection file again")
    attach.add_argument("host", metavar="HOST", help=HOST_HELP)
    attach.add_argument("kernel", metavar="KERNEL", help=KERNEL_HELP)
    attach.add_argument("--connection-file", metavar="PATH", help="where to write it (default: as start does)")


def start_options(parser: argparse.ArgumentParser) -> None:
    """The options of start and console that go into kernel_start."""
    parser.add_argument("--kind", choices=KINDS, default="spyder", help="spyder (default) or ipykernel (Jupyter)")
    parser.add_argument("--name", default="", help="a name for the kernel (default: ENV (KIND))")
    parser.add_argument("--cwd", metavar="DIR", help="its working folder on HOST (default: your home there)")
    parser.add_argument(
        "--env",
        dest="env_vars",
        action="append",
        type=_assignment,
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the kernel, if the host allows it (SPY_*, LANG, ...; repeatable)",
    )
    parser.add_argument("--restart", action="store_true", help="start it again if it dies without being asked to")


def _assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


# -- connection files ---------------------------------------------------------------------


def default_connection_file(kernel_id: str) -> Path:
    """``<this client's Jupyter runtime dir>/kernel-ssd-<id>.json``."""
    return Path(jupyter_runtime_dir()) / f"kernel-ssd-{kernel_id}.json"


def choose_connection_file(requested: str | None, reply: dict[str, Any], info: dict[str, Any]) -> Path:
    """Where to write *info*: PATH, or the default; never over the kernel's own file with other content.

    On the server's machine (or with a home shared by NFS) the default path is
    the very file the kernel reads again when it restarts. Writing the same
    content there is harmless; other content (a host name for a wildcard
    address) would break the restart, so the client's copy goes beside it.
    """
    kernel_id = reply["kernel"]["kernel_id"]
    path = Path(requested).expanduser().absolute() if requested else default_connection_file(kernel_id)
    if not _holds_other_info(path, reply, info):
        return path
    if requested:
        raise SSDError(
            f"{path} is the kernel's own connection file on the server (it reads it again on restart); "
            "choose another --connection-file",
            code="usage",
        )
    return path.with_name(f"kernel-ssd-{kernel_id}-client.json")


def _holds_other_info(path: Path, reply: dict[str, Any], info: dict[str, Any]) -> bool:
    """True if *path* is the kernel's own connection file and its content differs from *info*."""
    if str(path) != str(reply.get("connection_file", "")):
        return False
    try:
        present = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(present, dict) and {k: present.get(k) for k in info} != info


def write_connection(client: Client, requested: str | None, reply: dict[str, Any]) -> Path:
    """Write the classic connection file of a kernel_start or kernel_info reply; return where."""
    info = client.connection_info(reply)
    path = choose_connection_file(requested, reply, info)
    if not requested:  # Jupyter keeps its runtime dir private, as jupyter_core makes it
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return write_connection_file(path, info)


# -- resolving KERNEL ---------------------------------------------------------------------


def resolve_kernel(kernels: Sequence[dict[str, Any]], text: str, host: str) -> str:
    """The one kernel id that *text* names: an exact id, else a unique id prefix or name."""
    if not text:
        raise SSDError("KERNEL must not be empty", code="usage")
    ids = [str(k["kernel_id"]) for k in kernels]
    if text in ids:
        return text
    matches = [k for k in kernels if str(k["kernel_id"]).startswith(text.lower()) or k.get("name") == text]
    if len(matches) == 1:
        return str(matches[0]["kernel_id"])
    if not matches:
        raise SSDError(f"you have no kernel {text!r} on {host} (see: ssd-ctl kernels {host})", code="kernel_not_found")
    named = ", ".join(f"{str(k['kernel_id'])[:SHORT]} ({k.get('name', '')})" for k in matches)
    raise SSDError(f"{text!r} names {len(matches)} kernels: {named}; give more of the id", code="usage")


def _resolve(client: Client, args: argparse.Namespace) -> str:
    return resolve_kernel(client.kernel_list(), args.kernel, args.host)


# -- progress -----------------------------------------------------------------------------


@contextlib.contextmanager
def waiting(out: Output, text: str) -> Iterator[None]:
    """A spinner on stderr while a long request runs (only at a terminal, never with --json)."""
    if out.as_json or not out.err.is_terminal:
        yield
        return
    with out.err.status(text):
        yield


# -- commands -----------------------------------------------------------------------------


def start_kernel(client: Client, args: argparse.Namespace, out: Output) -> tuple[dict[str, Any], float]:
    """kernel_start with the command's options; returns the reply and the seconds it took here."""
    began = time.perf_counter()
    try:
        with waiting(out, f"starting a {args.kind} kernel in {args.env} on {args.host}..."):
            reply = client.kernel_start(
                args.env,
                args.kind,
                cwd=args.cwd,
                env_vars=dict(args.env_vars),
                name=args.name,
                restart=args.restart,
                timeout=max(args.timeout, START_TIMEOUT),
            )
    except KeyboardInterrupt:
        out.error(f"interrupted; the kernel may still start: see ssd-ctl kernels {args.host}")
        raise
    return reply, time.perf_counter() - began


def started_document(args: argparse.Namespace, reply: dict[str, Any], path: Path, took: float) -> dict[str, Any]:
    """What --json prints for a started kernel: no connection info (the key stays in the file)."""
    return {
        "host": args.host,
        "kernel": reply["kernel"],
        "connection_file": str(path),
        "server_connection_file": reply.get("connection_file"),
        "kernel_info": reply.get("kernel_info", {}),
        "timing": {**reply.get("timing", {}), "total": round(took, 3)},
    }


def say_started(out: Output, args: argparse.Namespace, reply: dict[str, Any], path: Path, took: float) -> None:
    """Tell a person which kernel started, where its file is, what it runs and how to stop it."""
    kernel, info = reply["kernel"], reply.get("kernel_info", {})
    out.say(f"kernel {kernel['kernel_id']} ({kernel['name']}) ready on {args.host} in {took:.1f} s")
    out.say(f"connection file: {path}")
    out.say(f"  {_describe_info(info)}, pid {kernel.get('pid')}, in {kernel.get('cwd')}")
    out.say(f"stop it with: ssd-ctl stop {args.host} {kernel['kernel_id'][:SHORT]}")


def _describe_info(info: dict[str, Any]) -> str:
    text = f"{info.get('language') or '?'} {info.get('language_version') or ''}".strip()
    if info.get("implementation"):
        text += f" ({info['implementation']} {info.get('implementation_version') or ''})".replace(" )", ")")
    if info.get("spyder_kernels"):
        text += f", spyder-kernels {info['spyder_kernels']}"
    return text


def cmd_start(args: argparse.Namespace, out: Output) -> int:
    """Start a kernel, write its connection file, say where and how long it took (or open a tunnel)."""
    with connected(args, out) as client:
        reply, took = start_kernel(client, args, out)
        if args.tunnel:
            remote = client.connection_info(reply)
        else:
            path = write_connection(client, args.connection_file, reply)
    if args.tunnel:
        return start_tunnel(args, out, reply, remote, took)
    if args.json:
        out.document(started_document(args, reply, path, took))
    else:
        say_started(out, args, reply, path, took)
    return 0


def start_tunnel(
    args: argparse.Namespace, out: Output, reply: dict[str, Any], remote: dict[str, Any], took: float
) -> int:
    """start --tunnel: the kernel runs; keep a local tunnel to it until Ctrl-C."""
    from ssd.ctl.tunnel import run_tunnel, tunnel_file  # the tunnel module imports this one

    kernel_id = str(reply["kernel"]["kernel_id"])
    path = tunnel_file(kernel_id, args.connection_file)
    if not args.json:
        say_started(out, args, reply, path, took)
    return run_tunnel(out, args.host, kernel_id, remote, path, tcp=args.tcp)


def cmd_kernels(args: argparse.Namespace, out: Output) -> int:
    """Table: id, name, label (the frontend's: a notebook, spyder), environment, kind, state, execution state,
    started, last activity, clients, lease."""
    with connected(args, out) as client:
        kernels = client.kernel_list()
    if args.json:
        listed = [{**k, "short_id": str(k["kernel_id"])[:SHORT]} for k in kernels]
        out.document({"host": args.host, "kernels": listed})
        return 0
    if not kernels:
        out.say(f"you have no kernels on {args.host} (start one: ssd-ctl start {args.host} ENV)")
        return 0
    now = time.time()
    rows = [
        (
            str(k["kernel_id"])[:SHORT],
            k.get("name", ""),
            k.get("label") or "-",
            k.get("env_name") or k.get("env", ""),
            k.get("kind", ""),
            k.get("state", ""),
            k.get("execution_state", ""),
            _when(k.get("started"), now),
            _ago(k.get("last_activity"), now),
            k.get("connections", 0),
            f"{k['lease']:g} s" if k.get("lease") else "-",
        )
        for k in sorted(kernels, key=lambda k: float(k.get("started") or 0))
    ]
    table = Table(title=Text(f"your kernels on {args.host}"), title_justify="left")
    columns = ("id", "name", "label", "env", "kind", "state", "execution", "started", "active", "clients", "lease")
    for column in columns:
        # Ids, kinds and states are what a person types or reads at a glance: never cut or folded.
        table.add_column(column, no_wrap=column in ("id", "kind", "state", "clients"))
    for row in rows:
        table.add_row(*(Text(str(value)) for value in row))  # Text, never markup: names come from the server
    out.out.print(table)
    return 0


def _when(stamp: Any, now: float) -> str:
    """A local time; the date only when it is not today."""
    if not isinstance(stamp, int | float):
        return "-"
    today = time.localtime(now)[:3] == time.localtime(stamp)[:3]
    return time.strftime("%H:%M" if today else "%Y-%m-%d %H:%M", time.localtime(stamp))


def _ago(stamp: Any, now: float) -> str:
    """How long ago, for a person: 'just now', '40 s ago', '3 min ago', '2 h ago', '5 days ago'."""
    if not isinstance(stamp, int | float):
        return "-"
    seconds = max(0.0, now - stamp)
    for limit, unit, size in ((60, "s", 1), (3600, "min", 60), (86400, "h", 3600)):
        if seconds < limit:
            return "just now" if seconds < 5 else f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds // 86400)} days ago"


def cmd_stop(args: argparse.Namespace, out: Output) -> int:
    """Shut the kernel down; remove the connection files this client wrote for it by default."""
    with connected(args, out) as client:
        kernel_id = _resolve(client, args)
        reply = shutdown_kernel(client, out, kernel_id, args.timeout)
    removed = remove_default_files(kernel_id)
    if args.json:
        out.document({"kernel_id": kernel_id, "exit_code": reply.get("exit_code"), "removed": removed})
    else:
        out.say(f"stopped kernel {kernel_id} (exit code {reply.get('exit_code')})")
        for path in removed:
            out.say(f"removed {path}")
    return 0


def shutdown_kernel(client: Client, out: Output, kernel_id: str, timeout: float) -> dict[str, Any]:
    """kernel_shutdown with a spinner; the server may take its grace period and then some."""
    with waiting(out, f"stopping kernel {kernel_id[:SHORT]}..."):
        return client.kernel_shutdown(kernel_id, timeout=max(timeout, SHUTDOWN_TIMEOUT))


def remove_default_files(kernel_id: str) -> list[str]:
    """Remove the default connection files of a kernel that is gone (a stale file misleads --existing)."""
    removed = []
    default = default_connection_file(kernel_id)
    for path in (default, default.with_name(f"kernel-ssd-{kernel_id}-client.json")):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(str(path))
    return removed


def cmd_interrupt(args: argparse.Namespace, out: Output) -> int:
    """Interrupt the running code (SIGINT to the kernel, or interrupt_request on its control channel)."""
    with connected(args, out) as client:
        kernel_id = _resolve(client, args)
        reply = client.kernel_interrupt(kernel_id, args.mode)
    if args.json:
        out.document({"kernel_id": kernel_id, "mode": reply.get("mode")})
    else:
        out.say(f"interrupted kernel {kernel_id} (by {reply.get('mode')})")
    return 0


def cmd_restart(args: argparse.Namespace, out: Output) -> int:
    """A new kernel process with the same id, ports and key: connection files stay valid."""
    with connected(args, out) as client:
        kernel_id = _resolve(client, args)
        began = time.perf_counter()
        with waiting(out, f"restarting kernel {kernel_id[:SHORT]}..."):
            reply = client.kernel_restart(kernel_id, timeout=max(args.timeout, START_TIMEOUT))
        took = time.perf_counter() - began
    if args.json:
        timing = {**reply.get("timing", {}), "total": round(took, 3)}
        out.document({"kernel": reply["kernel"], "kernel_info": reply.get("kernel_info", {}), "timing": timing})
    else:
        kernel = reply["kernel"]
        out.say(f"restarted kernel {kernel_id} in {took:.1f} s (pid {kernel.get('pid')}, same ports and key)")
    return 0


def cmd_detach(args: argparse.Namespace, out: Output) -> int:
    """Drop the kernel's lease: it no longer ends when the frontend that started it is gone."""
    with connected(args, out) as client:
        kernel_id = _resolve(client, args)
        client.kernel_lease(kernel_id, "detach")
    if args.json:
        out.document({"kernel_id": kernel_id, "lease": None})
    else:
        out.say(f"kernel {kernel_id} is detached: it runs until you stop it (ssd-ctl stop {args.host} {kernel_id})")
    return 0


def cmd_attach(args: argparse.Namespace, out: Output) -> int:
    """Write a running kernel's connection file again (for a client that lost it)."""
    with connected(args, out) as client:
        kernel_id = _resolve(client, args)
        reply = client.kernel_info(kernel_id)
        path = write_connection(client, args.connection_file, reply)
    if args.json:
        out.document(
            {"kernel": reply["kernel"], "connection_file": str(path), "kernel_info": reply.get("kernel_info", {})}
        )
    else:
        out.say(f"kernel {kernel_id} ({reply['kernel'].get('name')}) on {args.host}")
        out.say(f"connection file: {path}")
    return 0


KERNEL_COMMANDS = {
    "start": cmd_start,
    "kernels": cmd_kernels,
    "stop": cmd_stop,
    "interrupt": cmd_interrupt,
    "restart": cmd_restart,
    "attach": cmd_attach,
    "detach": cmd_detach,
}

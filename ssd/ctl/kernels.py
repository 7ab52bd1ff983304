"""ssd-ctl start, kernels, stop, interrupt, restart, detach and attach: your kernels on a host.

console is ``ssd.ctl.console``, tunnel ``ssd.ctl.tunnel``; what they share with these is in
``ssd.ctl.kernelargs`` (options, naming a kernel) and ``ssd.ctl.connfiles`` (connection files).
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path
from typing import Any

import msgspec
from rich.table import Table
from rich.text import Text

from ssd.client import Client
from ssd.client.kernels import START_TIMEOUT
from ssd.ctl.args import add_host
from ssd.ctl.commands import connected
from ssd.ctl.connfiles import remove_default_files, tunnel_file, write_connection
from ssd.ctl.kernelargs import KERNEL_HELP, SHORT, TCP_HELP, resolve, slurm_options, start_arguments, waiting
from ssd.ctl.output import Output
from ssd.ctl.slurmwait import start_in_job
from ssd.ctl.tunnel import run_tunnel
from ssd.replies import KernelDescription, KernelShutdownReply, KernelStartReply

__all__ = [
    "KERNEL_COMMANDS",
    "KERNEL_HELP",
    "SHORT",
    "TCP_HELP",
    "add_parsers",
    "say_started",
    "shutdown_kernel",
    "start_kernel",
    "started_document",
]

SHUTDOWN_TIMEOUT = 30.0
# A start in a Slurm job waits as long as the queue holds it (a day; Ctrl-C cancels it).
SLURM_WAIT = 86400.0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add the kernel commands to ssd-ctl's parser."""
    start = sub.add_parser("start", parents=[common], help="start a kernel in ENV on HOST, write its connection file")
    start_arguments(start)
    start.add_argument("--connection-file", metavar="PATH", help="where to write it (default: Jupyter's runtime dir)")
    start.add_argument(
        "--tunnel",
        action="store_true",
        help="then keep a local tunnel open and write a classic file for it (Spyder; until Ctrl-C)",
    )
    start.add_argument("--tcp", action="store_true", help=TCP_HELP)

    kernels = sub.add_parser("kernels", parents=[common], help="list your kernels on HOST")
    add_host(kernels)
    kernels.add_argument("--spares", action="store_true", help="list your spare kernels (started ahead) instead")

    spares = sub.add_parser("spares", parents=[common], help="how many spare kernels HOST keeps ready for you in ENV")
    add_host(spares)
    spares.add_argument("env", metavar="ENV", help="environment name or prefix (see: ssd-ctl envs HOST)")
    spares.add_argument("count", metavar="N", type=int, help="spares per kernel kind (0: none; the host caps it)")

    for name, text in (
        ("stop", "shut a kernel down (politely, then by force)"),
        ("interrupt", "interrupt the code a kernel is running"),
        ("restart", "restart a kernel: a new process, the same id, ports and key"),
        ("detach", "keep a kernel its frontend (Jupyter, Spyder) started running after that frontend ends"),
    ):
        command = sub.add_parser(name, parents=[common], help=text)
        add_host(command)
        command.add_argument("kernel", metavar="KERNEL", help=KERNEL_HELP)
        if name == "interrupt":
            command.add_argument("--mode", choices=["signal", "message"], help="default: as the kernelspec says")

    attach = sub.add_parser("attach", parents=[common], help="write a running kernel's connection file again")
    add_host(attach)
    attach.add_argument("kernel", metavar="KERNEL", help=KERNEL_HELP)
    attach.add_argument("--connection-file", metavar="PATH", help="where to write it (default: as start does)")


def start_kernel(client: Client, args: argparse.Namespace, out: Output) -> tuple[KernelStartReply, float]:
    """kernel_start with the command's options; returns the reply and the seconds it took here."""
    began = time.perf_counter()
    slurm = slurm_options(args)
    where = " in a Slurm job (queued until Slurm runs it)" if slurm is not None else ""
    text = f"starting a {args.kind} kernel in {args.env} on {args.host}{where}..."
    request = functools.partial(
        client.aclient.kernel_start,
        args.env,
        args.kind,
        cwd=args.cwd,
        env_vars=dict(args.env_vars),
        name=args.name,
        restart=args.restart,
        placement="local" if slurm is None else "slurm",
        slurm=slurm,
        timeout=max(args.timeout, START_TIMEOUT) if slurm is None else SLURM_WAIT,
    )
    if slurm is not None:  # Ctrl-C cancels the job: raised on as KeyboardInterrupt (exit 130)
        reply = client.run(start_in_job(client.aclient, out, text, lambda token: request(start_token=token)))
        return reply, time.perf_counter() - began
    try:
        with waiting(out, text):
            reply = client.run(request())
    except KeyboardInterrupt:
        out.error(f"interrupted; the kernel may still start: see ssd-ctl kernels {args.host}")
        raise
    return reply, time.perf_counter() - began


def started_document(args: argparse.Namespace, reply: KernelStartReply, path: Path, took: float) -> dict[str, Any]:
    """What --json prints for a started kernel: no connection info (the key stays in the file)."""
    return {
        "host": args.host,
        "kernel": msgspec.to_builtins(reply.kernel),
        "connection_file": str(path),
        "server_connection_file": reply.connection_file,
        "kernel_info": reply.kernel_info,
        "timing": {**reply.timing, "total": round(took, 3)},
    }


def say_started(out: Output, args: argparse.Namespace, reply: KernelStartReply, path: Path, took: float) -> None:
    """Tell a person which kernel started, where its file is, what it runs and how to stop it."""
    kernel, info = reply.kernel, reply.kernel_info
    out.say(f"kernel {kernel.kernel_id} ({kernel.name}) ready on {args.host} in {took:.1f} s")
    out.say(f"connection file: {path}")
    out.say(f"  {_describe_info(info)}, pid {kernel.pid}, in {kernel.cwd}")
    out.say(f"stop it with: ssd-ctl stop {args.host} {kernel.kernel_id[:SHORT]}")


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
            remote = client.connection_info(reply.connection)
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
    args: argparse.Namespace, out: Output, reply: KernelStartReply, remote: dict[str, Any], took: float
) -> int:
    """start --tunnel: the kernel runs; keep a local tunnel to it until Ctrl-C."""
    kernel_id = reply.kernel.kernel_id
    path = tunnel_file(kernel_id, args.connection_file)
    if not args.json:
        say_started(out, args, reply, path, took)
    return run_tunnel(out, args.host, kernel_id, remote, path, tcp=args.tcp)


def cmd_kernels(args: argparse.Namespace, out: Output) -> int:
    """Table: id, name, label (the frontend's: a notebook, spyder), environment, kind, state, execution state,
    started, last activity, clients, lease."""
    with connected(args, out) as client:
        kernels = client.kernel_list(spares=args.spares)
    what = "spare kernels" if args.spares else "kernels"
    if args.json:
        listed = [{**msgspec.to_builtins(k), "short_id": k.kernel_id[:SHORT]} for k in kernels]
        out.document({"host": args.host, what.replace(" ", "_"): listed})
        return 0
    if not kernels:
        out.say(
            f"you have no {what} on {args.host}"
            + ("" if args.spares else f" (start one: ssd-ctl start {args.host} ENV)")
        )
        return 0
    now = time.time()
    jobs = any(k.job_id for k in kernels)  # Slurm's columns only where some kernel runs in a job
    rows = [
        (
            k.kernel_id[:SHORT],
            k.name,
            k.label or "-",
            k.env_name or k.env,
            k.kind,
            k.state,
            k.execution_state,
            _when(k.started, now),
            _ago(k.last_activity, now),
            k.connections,
            f"{k.lease:g} s" if k.lease else "-",
            *(_job(k) if jobs else ()),
        )
        for k in sorted(kernels, key=lambda k: k.started)
    ]
    table = Table(title=Text(f"your {what} on {args.host}"), title_justify="left")
    columns: tuple[str, ...] = (
        "id",
        "name",
        "label",
        "env",
        "kind",
        "state",
        "execution",
        "started",
        "active",
        "clients",
        "lease",
    )
    columns += ("job", "node", "partition", "left") if jobs else ()
    for column in columns:
        # Ids, kinds and states are what a person types or reads at a glance: never cut or folded.
        table.add_column(column, no_wrap=column in ("id", "kind", "state", "clients"))
    for row in rows:
        table.add_row(*(Text(str(value)) for value in row))  # Text, never markup: names come from the server
    out.out.print(table)
    return 0


def _job(kernel: KernelDescription) -> tuple[str, ...]:
    """Job id, node, partition and time left of a kernel in a Slurm job ("-" for a local one)."""
    if not kernel.job_id:
        return ("-",) * 4
    left = "-" if kernel.time_left is None else f"{kernel.time_left // 60}:{kernel.time_left % 60:02d}"
    return (str(kernel.job_id), kernel.node or "-", kernel.partition or "-", left)


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
        kernel_id = resolve(client, args)
        reply = shutdown_kernel(client, out, kernel_id, args.timeout)
    removed = remove_default_files(kernel_id)
    if args.json:
        out.document({"kernel_id": kernel_id, "exit_code": reply.exit_code, "removed": removed})
    else:
        out.say(f"stopped kernel {kernel_id} (exit code {reply.exit_code})")
        for path in removed:
            out.say(f"removed {path}")
    return 0


def shutdown_kernel(client: Client, out: Output, kernel_id: str, timeout: float) -> KernelShutdownReply:
    """kernel_shutdown with a spinner; the server may take its grace period and then some."""
    with waiting(out, f"stopping kernel {kernel_id[:SHORT]}..."):
        return client.kernel_shutdown(kernel_id, timeout=max(timeout, SHUTDOWN_TIMEOUT))


def cmd_interrupt(args: argparse.Namespace, out: Output) -> int:
    """Interrupt the running code (SIGINT to the kernel, or interrupt_request on its control channel)."""
    with connected(args, out) as client:
        kernel_id = resolve(client, args)
        reply = client.kernel_interrupt(kernel_id, args.mode)
    if args.json:
        out.document({"kernel_id": kernel_id, "mode": reply.mode})
    else:
        out.say(f"interrupted kernel {kernel_id} (by {reply.mode})")
    return 0


def cmd_restart(args: argparse.Namespace, out: Output) -> int:
    """A new kernel process with the same id, ports and key: connection files stay valid."""
    with connected(args, out) as client:
        kernel_id = resolve(client, args)
        began = time.perf_counter()
        with waiting(out, f"restarting kernel {kernel_id[:SHORT]}..."):
            reply = client.kernel_restart(kernel_id, timeout=max(args.timeout, START_TIMEOUT))
        took = time.perf_counter() - began
    if args.json:
        timing = {**reply.timing, "total": round(took, 3)}
        kernel = msgspec.to_builtins(reply.kernel)
        out.document({"kernel": kernel, "kernel_info": reply.kernel_info, "timing": timing})
    else:
        out.say(f"restarted kernel {kernel_id} in {took:.1f} s (pid {reply.kernel.pid}, same ports and key)")
    return 0


def cmd_detach(args: argparse.Namespace, out: Output) -> int:
    """Drop the kernel's lease: it no longer ends when the frontend that started it is gone."""
    with connected(args, out) as client:
        kernel_id = resolve(client, args)
        client.kernel_lease(kernel_id, "detach")
    if args.json:
        out.document({"kernel_id": kernel_id, "lease": None})
    else:
        out.say(f"kernel {kernel_id} is detached: it runs until you stop it (ssd-ctl stop {args.host} {kernel_id})")
    return 0


def cmd_attach(args: argparse.Namespace, out: Output) -> int:
    """Write a running kernel's connection file again (for a client that lost it)."""
    with connected(args, out) as client:
        kernel_id = resolve(client, args)
        reply = client.kernel_info(kernel_id)
        path = write_connection(client, args.connection_file, reply)
    if args.json:
        kernel = msgspec.to_builtins(reply.kernel)
        out.document({"kernel": kernel, "connection_file": str(path), "kernel_info": reply.kernel_info})
    else:
        out.say(f"kernel {kernel_id} ({reply.kernel.name}) on {args.host}")
        out.say(f"connection file: {path}")
    return 0


def cmd_spares(args: argparse.Namespace, out: Output) -> int:
    """Set how many spare kernels the host keeps ready for this user in ENV (remembered there)."""
    with connected(args, out) as client:
        reply = client.spares(args.env, args.count)
    if args.json:
        out.document({"host": args.host, **msgspec.to_builtins(reply)})
    else:
        capped = f" (the host allows {reply.host_cap})" if reply.count < args.count else ""
        out.say(f"{args.host} keeps {reply.count} spare kernel(s) per kind ready in {reply.env}{capped}")
    return 0


KERNEL_COMMANDS = {
    "start": cmd_start,
    "kernels": cmd_kernels,
    "spares": cmd_spares,
    "stop": cmd_stop,
    "interrupt": cmd_interrupt,
    "restart": cmd_restart,
    "attach": cmd_attach,
    "detach": cmd_detach,
}

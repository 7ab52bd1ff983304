"""What the kernel commands (start, console, stop, attach, tunnel, ...) share: options, naming a kernel, a spinner."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from ssd.client import Client
from ssd.ctl.args import add_host
from ssd.ctl.output import Output
from ssd.errors import ErrorCode, SSDError
from ssd.messages import KERNEL_KINDS
from ssd.replies import KernelDescription

__all__ = [
    "KERNEL_HELP",
    "KINDS",
    "SHORT",
    "TCP_HELP",
    "resolve",
    "resolve_kernel",
    "slurm_arguments",
    "slurm_options",
    "spec_placement",
    "start_arguments",
    "waiting",
]

KINDS = KERNEL_KINDS
KERNEL_HELP = "kernel id, a unique start of one, or the kernel's name (see: ssd-ctl kernels HOST)"
SHORT = 8  # characters of a kernel id shown in tables and hints
TCP_HELP = (
    "with --tunnel: TCP on 127.0.0.1 instead of sockets only you can open (any local user can then "
    "read the kernel's output); for frontends that do not take transport ipc"
)


def start_arguments(parser: argparse.ArgumentParser) -> None:
    """HOST, ENV and the options of start and console that go into kernel_start."""
    add_host(parser)
    parser.add_argument("env", metavar="ENV", help="environment name or prefix (see: ssd-ctl envs HOST)")
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
    slurm_arguments(parser)


def slurm_arguments(parser: argparse.ArgumentParser, *, queue_timeout: bool = False) -> None:
    """--slurm and the resources it takes (start, console, kernelspec install; its --queue-timeout too)."""
    slurm = parser.add_argument_group("kernel in a Slurm job (a cluster's login node; see: ssd-ctl info HOST)")
    slurm.add_argument("--slurm", action="store_true", help="run the kernel in a Slurm job; waits while queued")
    slurm.add_argument("--partition", help="Slurm partition (default: the host's)")
    slurm.add_argument("--time", help="time limit, Slurm notation: 90, 1:30:00, 2-12 (default: the host's)")
    slurm.add_argument("--cpus", type=int, help="CPUs (default: the host's)")
    slurm.add_argument("--mem", help="memory: 4G, 512M (default: the host's)")
    slurm.add_argument("--gpus", type=int, help="GPUs (default: none)")
    if queue_timeout:
        slurm.add_argument(
            "--queue-timeout",
            type=float,
            metavar="SECONDS",
            help="how long a start may wait in Slurm's queue before its job is cancelled (default 3600; 0: no limit)",
        )


def slurm_options(args: argparse.Namespace) -> dict[str, object] | None:
    """kernel_start's Slurm options from --slurm and its companions; None without --slurm."""
    given = {key: getattr(args, key) for key in ("partition", "time", "cpus", "mem", "gpus")}
    if not args.slurm:
        named = [f"--{key}" for key, value in given.items() if value is not None]
        if named:
            raise SSDError(f"{', '.join(named)} need --slurm", code=ErrorCode.USAGE)
        return None
    return {key: value for key, value in given.items() if value is not None}


def spec_placement(args: argparse.Namespace) -> dict[str, Any]:
    """A kernelspec's config keys for a kernel in a Slurm job (--slurm and its resources); {} without --slurm."""
    slurm = slurm_options(args)
    if slurm is None:
        if args.queue_timeout is not None:
            raise SSDError("--queue-timeout needs --slurm", code=ErrorCode.USAGE)
        return {}
    if args.queue_timeout is not None and args.queue_timeout < 0:
        raise SSDError("--queue-timeout must be 0 (no limit) or more seconds", code=ErrorCode.USAGE)
    timeout = {} if args.queue_timeout is None else {"queue_timeout": args.queue_timeout}
    return {"slurm": slurm, **timeout}


def _assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def resolve_kernel(kernels: Sequence[KernelDescription], text: str, host: str) -> str:
    """The one kernel id that *text* names: an exact id, else a unique id prefix or name."""
    if not text:
        raise SSDError("KERNEL must not be empty", code=ErrorCode.USAGE)
    ids = [k.kernel_id for k in kernels]
    if text in ids:
        return text
    matches = [k for k in kernels if k.kernel_id.startswith(text.lower()) or k.name == text]
    if len(matches) == 1:
        return matches[0].kernel_id
    if not matches:
        raise SSDError(
            f"you have no kernel {text!r} on {host} (see: ssd-ctl kernels {host})", code=ErrorCode.KERNEL_NOT_FOUND
        )
    named = ", ".join(f"{k.kernel_id[:SHORT]} ({k.name})" for k in matches)
    raise SSDError(f"{text!r} names {len(matches)} kernels: {named}; give more of the id", code=ErrorCode.USAGE)


def resolve(client: Client, args: argparse.Namespace) -> str:
    """The kernel id that args.kernel names among this user's kernels on args.host."""
    return resolve_kernel(client.kernel_list(), args.kernel, args.host)


@contextlib.contextmanager
def waiting(out: Output, text: str) -> Iterator[None]:
    """A spinner on stderr while a long request runs (only at a terminal, never with --json)."""
    if out.as_json or not out.err.is_terminal:
        yield
        return
    with out.err.status(text):
        yield

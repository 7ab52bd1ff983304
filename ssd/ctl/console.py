"""ssd-ctl console: start a kernel and open ``jupyter console`` on it, if that is installed here.

``jupyter console`` is not a dependency of ssd: without it the kernel keeps
running and the command to run once it is installed is printed.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

from ssd.ctl.commands import connected
from ssd.ctl.connfiles import remove_default_files, write_connection
from ssd.ctl.kernelargs import SHORT, start_arguments
from ssd.ctl.kernels import say_started, shutdown_kernel, start_kernel, started_document
from ssd.ctl.output import Output

__all__ = ["CONSOLE_COMMANDS", "add_parser", "jupyter_console"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add ``console`` to ssd-ctl's parser."""
    console = sub.add_parser("console", parents=[common], help="start a kernel in ENV and open jupyter console on it")
    start_arguments(console)
    console.add_argument("--keep", action="store_true", help="leave the kernel running when the console exits")


def jupyter_console() -> str | None:
    """The ``jupyter`` program if ``jupyter console`` works here, else None."""
    program = shutil.which("jupyter")
    if program is None:
        return None
    try:
        probe = subprocess.run(
            [program, "console", "--version"], stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return program if probe.returncode == 0 else None


def cmd_console(args: argparse.Namespace, out: Output) -> int:
    """Start a kernel and run ``jupyter console --existing`` on it; stop it afterwards unless --keep."""
    program = jupyter_console()
    with connected(args, out) as client:
        reply, took = start_kernel(client, args, out)
        path = write_connection(client, None, reply)
    kernel_id = reply.kernel.kernel_id
    document = started_document(args, reply, path, took)
    stop_hint = f"ssd-ctl stop {args.host} {kernel_id[:SHORT]}"
    if program is None:
        command = shlex.join(["jupyter", "console", "--existing", str(path)])
        out.error("jupyter console is not installed here (pip install jupyter-console, or conda install it)")
        out.err.print(f"kernel {kernel_id} keeps running; once jupyter console is installed, run:", markup=False)
        out.err.print(f"  {command}", markup=False)
        out.err.print(f"stop the kernel with: {stop_hint}", markup=False)
        if args.json:
            out.document({**document, "console": None, "command": command, "stopped": False})
        return 1
    if not args.json:
        say_started(out, args, reply, path, took)
    code = _run_console(program, path)
    stopped = not args.keep
    if stopped:
        with connected(args, out) as client:  # a new connection: the console may have run for hours
            shutdown_kernel(client, out, kernel_id, args.timeout)
        remove_default_files(kernel_id)
        out.say(f"stopped kernel {kernel_id}")
    else:
        out.say(f"kernel {kernel_id} keeps running; stop it with: {stop_hint}")
    if args.json:
        out.document({**document, "console": {"program": program, "exit_code": code}, "stopped": stopped})
    if code != 0:
        out.error(f"jupyter console exited with code {code}")
        return 1
    return 0


def _run_console(program: str, path: Path) -> int:
    """Run the console in this terminal; Ctrl-C is the console's (it interrupts the kernel), not ours."""
    process = subprocess.Popen([program, "console", "--existing", str(path)])  # no shell
    # Only after the spawn: a SIGINT ignored before exec would stay ignored in the console too.
    previous = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        return process.wait()
    finally:
        signal.signal(signal.SIGINT, previous)


CONSOLE_COMMANDS = {"console": cmd_console}

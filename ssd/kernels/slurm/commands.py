"""Slurm's client commands: found once (configured path or PATH), run without a shell, with a timeout.

Every Slurm operation here is an ``Invocation`` built by a pure function and read by another; ``run`` and
``async_run`` (inside an event loop only) execute one and turn OS errors and timeouts into ``SlurmError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ssd.kernels.slurm.errors import SlurmError, SlurmUnavailable
from ssd.kernels.slurm.limits import SlurmConfig

__all__ = ["Completed", "Invocation", "SlurmCommands", "async_run", "run"]

_COMMAND_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class Invocation:
    """One command line, its stdin and its whole environment."""

    argv: list[str]
    env: dict[str, str]
    stdin: str | None = None


@dataclass(frozen=True)
class Completed:
    """What a Slurm command did: exit status and both outputs."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def failure(self) -> str:
        """Slurm's own words on a failure (its stderr, else stdout), on one line."""
        text = (self.stderr.strip() or self.stdout.strip() or f"exit status {self.returncode}").splitlines()
        return " / ".join(line.strip() for line in text if line.strip())


@dataclass(frozen=True)
class SlurmCommands:
    """Absolute paths of the Slurm commands ssd uses, the slurm.conf they read and their timeout."""

    sbatch: str
    squeue: str
    scancel: str
    sacct: str | None
    conf: str | None = None
    timeout: float = 30.0

    @classmethod
    def from_config(cls, config: SlurmConfig, *, path: str | None = None) -> SlurmCommands:
        """Find each command (configured path, else *path*, else PATH); SlurmUnavailable names a missing one."""
        search = path if path is not None else os.environ.get("PATH", _COMMAND_PATH)
        conf = config.conf or os.environ.get("SLURM_CONF") or None
        if conf is not None and not Path(conf).is_file():
            raise SlurmUnavailable(f"slurm.conf {conf} does not exist (slurm.conf or SLURM_CONF)")
        return cls(
            sbatch=_find("sbatch", config.sbatch, search),
            squeue=_find("squeue", config.squeue, search),
            scancel=_find("scancel", config.scancel, search),
            sacct=_find_optional("sacct", config.sacct, search),
            conf=conf,
            timeout=config.command_timeout,
        )

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The whole environment of a Slurm command: a fixed PATH, SLURM_CONF when set, then *extra*."""
        env = {"PATH": _COMMAND_PATH, **(extra or {})}
        if self.conf is not None:
            env["SLURM_CONF"] = self.conf
        return env


def _find(name: str, configured: str, search: str) -> str:
    if configured:
        if not (os.path.isabs(configured) and os.access(configured, os.X_OK)):
            raise SlurmUnavailable(f"slurm.{name} = {configured} is not an executable absolute path")
        return configured
    found = shutil.which(name, path=search)
    if found is None:
        raise SlurmUnavailable(f"{name} is not on PATH; install Slurm's client commands or set slurm.{name}")
    return os.path.abspath(found)


def _find_optional(name: str, configured: str, search: str) -> str | None:
    try:
        return _find(name, configured, search)
    except SlurmUnavailable:
        if configured:
            raise
        return None


def run(invocation: Invocation, timeout: float) -> Completed:
    """Run *invocation* and wait for it (no shell; cwd /)."""
    try:
        done = subprocess.run(  # argv built by this package, never through a shell
            invocation.argv,
            input=invocation.stdin,
            env=invocation.env,
            cwd="/",
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise _timed_out(invocation, timeout) from None
    except OSError as exc:
        raise SlurmUnavailable(f"cannot run {invocation.argv[0]}: {exc.strerror or exc}") from None
    return Completed(invocation.argv, done.returncode, done.stdout, done.stderr)


async def async_run(invocation: Invocation, timeout: float) -> Completed:
    """Run *invocation* from the event loop; on timeout the command is killed."""
    try:
        process = await asyncio.create_subprocess_exec(
            *invocation.argv,
            stdin=asyncio.subprocess.PIPE if invocation.stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=invocation.env,
            cwd="/",
        )
    except OSError as exc:
        raise SlurmUnavailable(f"cannot run {invocation.argv[0]}: {exc.strerror or exc}") from None
    data = invocation.stdin.encode() if invocation.stdin is not None else None
    try:
        out, err = await asyncio.wait_for(process.communicate(data), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise _timed_out(invocation, timeout) from None
    assert process.returncode is not None
    return Completed(invocation.argv, process.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


def _timed_out(invocation: Invocation, timeout: float) -> SlurmError:
    name = os.path.basename(invocation.argv[0])
    return SlurmError(f"{name} did not answer within {timeout:g} s (is slurmctld up? slurm.command_timeout)")

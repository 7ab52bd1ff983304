"""Submitting a kernel as a Slurm batch job: the script, the ``sbatch --parsable`` command line, the job id.

Called by the kernel worker, which runs as the user: the job is the user's, in a working folder and with an
output file the user can write. The job's environment is exactly the one given (``--export=ALL`` of an
environment built here, never the worker's own), plus the ``SLURM_*`` variables Slurm adds.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ssd.kernels.slurm.commands import Completed, Invocation, SlurmCommands, async_run, run
from ssd.kernels.slurm.errors import SlurmError, SlurmLimitError, SlurmOutputError
from ssd.kernels.slurm.limits import SlurmResources
from ssd.kernels.slurm.units import format_memory

__all__ = ["JobSpec", "async_submit", "batch_script", "parse_job_id", "sbatch_invocation", "submit"]

_JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Variables that would change sbatch itself, or that Slurm sets in the job.
_SLURM_OWN = ("SBATCH_", "SLURM_", "SALLOC_", "SRUN_")
_PARSABLE = re.compile(r"(?P<job_id>[1-9][0-9]*)(?:;(?P<cluster>[A-Za-z0-9_.-]+))?")


@dataclass(frozen=True)
class JobSpec:
    """One kernel job: the command to run on the node, its resources, folder, output file and environment."""

    command: Sequence[str]
    resources: SlurmResources
    workdir: Path
    output: Path
    environment: Mapping[str, str] = field(default_factory=dict)
    job_name: str = "ssd-kernel"


def batch_script(command: Sequence[str]) -> str:
    """The batch script: ``exec`` of *command*, each word quoted (the script is the only shell involved)."""
    if not command or not os.path.isabs(command[0]):
        raise SlurmError("a kernel job's command must start with an absolute path (the node has no PATH of ours)")
    if any("\0" in word or "\n" in word for word in command):
        raise SlurmError("a kernel job's command holds a NUL or newline")
    return "#!/bin/sh\nexec " + " ".join(shlex.quote(word) for word in command) + "\n"


def sbatch_invocation(spec: JobSpec, commands: SlurmCommands) -> Invocation:
    """``sbatch --parsable`` with *spec*'s options; the script goes on stdin."""
    check_spec(spec)
    resources = spec.resources
    argv = [
        commands.sbatch,
        "--parsable",
        f"--job-name={spec.job_name}",
        f"--chdir={spec.workdir}",
        f"--output={spec.output}",
        "--export=ALL",  # ALL of the environment below, which holds nothing but spec.environment
        "--no-requeue",  # a requeued kernel would restart empty, unseen
        "--nodes=1",
        "--ntasks=1",
        f"--time={resources.time}",
        f"--cpus-per-task={resources.cpus}",
    ]
    if resources.partition is not None:
        argv.append(f"--partition={resources.partition}")
    if resources.mem_mib is not None:
        argv.append(f"--mem={format_memory(resources.mem_mib)}")
    if resources.gpus:
        argv.append(f"--gpus={resources.gpus}")
    return Invocation(argv, commands.environment(spec.environment), batch_script(spec.command))


def check_spec(spec: JobSpec) -> None:
    """Refuse a spec Slurm would take but run badly: a folder or output the caller cannot use, odd variables."""
    if not _JOB_NAME.fullmatch(spec.job_name):
        raise SlurmLimitError(f"job name {spec.job_name!r}: letters, digits, _ . - only (at most 64)")
    if not (spec.workdir.is_absolute() and spec.workdir.is_dir() and os.access(spec.workdir, os.X_OK)):
        raise SlurmError(f"the job's working folder {spec.workdir} is not a folder you can enter")
    folder = spec.output.parent
    if not (spec.output.is_absolute() and folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
        raise SlurmError(f"the job's output file {spec.output} is not in a folder you can write")
    if "%" in spec.output.name:
        raise SlurmError(f"the job's output file {spec.output} holds %, which Slurm would expand")
    for name in spec.environment:
        if not _VARIABLE.fullmatch(name) or name.startswith(_SLURM_OWN):
            raise SlurmError(f"environment variable {name!r} cannot be passed to a job")


def parse_job_id(done: Completed) -> int:
    """The job id of ``sbatch --parsable`` (``ID`` or ``ID;CLUSTER``); SlurmError with sbatch's words on refusal."""
    if done.returncode != 0:
        raise SlurmError(f"sbatch refused the job: {done.failure()}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    match = _PARSABLE.fullmatch(lines[-1].strip()) if len(lines) == 1 else None
    if match is None:
        raise SlurmOutputError(f"sbatch --parsable printed {done.stdout.strip()!r}, not a job id")
    return int(match["job_id"])


def submit(spec: JobSpec, commands: SlurmCommands) -> int:
    """Submit *spec* as a batch job and return its job id."""
    return parse_job_id(run(sbatch_invocation(spec, commands), commands.timeout))


async def async_submit(spec: JobSpec, commands: SlurmCommands) -> int:
    """Submit *spec* from the event loop and return its job id."""
    return parse_job_id(await async_run(sbatch_invocation(spec, commands), commands.timeout))

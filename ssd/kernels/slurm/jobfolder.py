"""What the kernel worker keeps in a kernel job's folder: the job it submits (``job.json``, with the link's
keys) and, after a failed start, why (the job host's ``failure`` file, else the logs' last lines)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import zmq

from ssd.errors import ErrorCode, SSDError
from ssd.files import write_atomic
from ssd.kernels import launch
from ssd.kernels.record import KernelRecord, SlurmJob
from ssd.kernels.slurm.commands import SlurmCommands
from ssd.kernels.slurm.jobhost import FAILURE_FILE, JOB_FILE, KERNEL_LOG
from ssd.kernels.slurm.limits import SlurmResources
from ssd.kernels.slurm.query import job_named
from ssd.kernels.slurm.submit import JobSpec

__all__ = ["find_submitted", "job_name", "prepare_job", "start_failure"]

log = logging.getLogger(__name__)


def job_name(kernel_id: str) -> str:
    """The job's name, which carries the kernel's id: a job whose id never reached the record is found by it."""
    return f"ssd-kernel-{kernel_id}"


def find_submitted(kernel_id: str, commands: SlurmCommands) -> int | None:
    """The job of a kernel recorded as submitting (the daemon stopped while sbatch ran), found by its name;
    None (logged) when Slurm holds no such job or cannot be asked."""
    name = job_name(kernel_id)
    try:
        job_id = job_named(name, commands)
    except SSDError as exc:
        log.warning("kernel %s: cannot look for its job %s (%s); forgetting the kernel", kernel_id, name, exc)
        return None
    if job_id is None:
        log.info("kernel %s: no job %s in Slurm (sbatch never ran, or the job ended): forgotten", kernel_id, name)
        return None
    log.warning(
        "kernel %s: job %d (%s) was submitted but its id never reached the record (the daemon stopped while "
        "sbatch ran); adopting it",
        *(kernel_id, job_id, name),
    )
    return job_id


def prepare_job(record: KernelRecord, job: SlurmJob, login: str) -> tuple[JobSpec, dict[str, str]]:
    """The job's folder (0700) and job.json (0600, with fresh link keys); the job to submit and the keys the
    worker's side of the link adds to the record's connection."""
    folder = Path(job.folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=False)
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    link = {
        "server_publickey": server_public.decode(),
        "server_secretkey": server_secret.decode(),
        "client_publickey": client_public.decode(),
    }
    described = {"argv": record.argv, "environ": record.environ, "cwd": record.cwd, "umask": record.umask}
    described |= {"key": record.connection["key"], "login": login, "link": link}
    write_atomic(folder / JOB_FILE, json.dumps(described))
    resources = SlurmResources(
        partition=job.partition, time_seconds=job.time_seconds, cpus=job.cpus, mem_mib=job.mem_mib, gpus=job.gpus
    )
    spec = JobSpec(
        command=[sys.executable, "-I", "-m", "ssd.kernels.slurm.jobhost", str(folder)],
        resources=resources,
        workdir=Path(record.cwd),
        output=folder / "job.log",
        environment=record.environ,
        job_name=job_name(record.kernel_id),
    )
    keys = {"link_serverkey": link["server_publickey"], "link_publickey": client_public.decode()}
    return spec, keys | {"link_secretkey": client_secret.decode()}


def start_failure(folder: Path, job_id: int, reason: str) -> SSDError:
    """A failed start's error: the job host's own reason if it wrote one, else *reason* and the logs' tails."""
    try:
        failure = (folder / FAILURE_FILE).read_text(errors="replace")[:1000].strip()
    except OSError:
        failure = ""
    if failure:  # the job host said why: that, not the job's end, is what the user must fix
        return SSDError(f"the kernel could not start in job {job_id}: {failure}", code=ErrorCode.KERNEL_START_FAILED)
    tail = "\n".join(t for t in (launch.log_tail(str(folder / n)) for n in ("job.log", KERNEL_LOG)) if t)
    return SSDError(reason + (f"; its last output:\n{tail}" if tail else ""), code=ErrorCode.KERNEL_START_FAILED)

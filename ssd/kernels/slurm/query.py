"""One job's state from Slurm: ``squeue`` while the controller remembers the job (``MinJobAge`` after its
end), ``sacct`` after that where accounting is on; and ``scancel``.

The outputs are read strictly: a line of another shape is a ``SlurmOutputError`` that quotes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ssd.kernels.slurm.commands import Completed, Invocation, SlurmCommands, async_run, run
from ssd.kernels.slurm.errors import SlurmError, SlurmOutputError
from ssd.kernels.slurm.units import parse_duration

__all__ = [
    "GONE",
    "JobStatus",
    "async_cancel",
    "async_job_status",
    "async_jobs_status",
    "cancel",
    "job_named",
    "job_status",
    "parse_sacct",
    "parse_squeue",
    "parse_squeue_jobs",
]

# ssd's own state for a job neither squeue nor sacct knows (ended long ago with accounting off, or never ours).
GONE = "GONE"
_SQUEUE_FIELDS = ("%i", "%T", "%r", "%N", "%P", "%L", "%l")
_SACCT_FIELDS = ("JobID", "State", "Reason", "NodeList", "Partition", "Timelimit")
_NO_TIME = {"UNLIMITED", "INFINITE", "INVALID", "NOT_SET", "N/A", "Partition_Limit"}
_STATE = re.compile(r"[A-Z][A-Z_]+")
_UNKNOWN_JOB = "Invalid job id specified"


@dataclass(frozen=True)
class JobStatus:
    """What Slurm says of one job (``state`` is Slurm's, e.g. PENDING, RUNNING, TIMEOUT; or GONE)."""

    job_id: int
    state: str
    reason: str
    node: str | None = None
    partition: str | None = None
    time_left: int | None = None  # seconds; None when unlimited or not known
    time_limit: int | None = None


def squeue_invocation(job_id: int | list[int], commands: SlurmCommands) -> Invocation:
    """``squeue`` for one job or several, in any state (ended jobs stay listed for ``MinJobAge``)."""
    ids = ",".join(str(n) for n in ([job_id] if isinstance(job_id, int) else job_id))
    fmt = "|".join(_SQUEUE_FIELDS)
    argv = [commands.squeue, f"--jobs={ids}", "--states=all", "--noheader", f"--format={fmt}"]
    return Invocation(argv, commands.environment())


def parse_squeue(done: Completed, job_id: int) -> JobStatus | None:
    """The job's line of ``squeue``; None when the controller no longer knows the job."""
    return parse_squeue_jobs(done, [job_id]).get(job_id)


def parse_squeue_jobs(done: Completed, job_ids: list[int]) -> dict[int, JobStatus]:
    """The lines of ``squeue`` for *job_ids*, by job; a job the controller no longer knows is absent."""
    if done.returncode != 0:
        if _UNKNOWN_JOB in done.stderr:
            return {}
        raise SlurmError(f"squeue failed: {done.failure()}")
    found: dict[int, JobStatus] = {}
    for line in (line for line in done.stdout.splitlines() if line.strip()):
        status = _squeue_line(line, job_ids)
        if status.job_id in found:
            raise SlurmOutputError(f"squeue listed job {status.job_id} twice: {done.stdout.strip()!r}")
        found[status.job_id] = status
    return found


def _squeue_line(line: str, job_ids: list[int]) -> JobStatus:
    listed, state, reason, node, partition, left, limit = _split(line, len(_SQUEUE_FIELDS), "squeue")
    job_id = next((n for n in job_ids if listed == str(n)), None)
    if job_id is None:
        raise SlurmOutputError(f"asked Slurm for jobs {job_ids}, it answered {line!r}")
    return JobStatus(
        job_id=job_id,
        state=_state(state, line),
        reason=reason,
        node=node or None,
        partition=partition or None,
        time_left=_time(left, line),
        time_limit=_time(limit, line),
    )


def sacct_invocation(job_id: int, commands: SlurmCommands) -> Invocation | None:
    """``sacct`` for the job's allocation only (``-X``), parsable; None where sacct is not installed."""
    if commands.sacct is None:
        return None
    fields = ",".join(_SACCT_FIELDS)
    argv = [commands.sacct, f"--jobs={job_id}", "--allocations", "--noheader", "--parsable2", f"--format={fields}"]
    return Invocation(argv, commands.environment())


def parse_sacct(done: Completed, job_id: int) -> JobStatus | None:
    """The job's record in accounting; None when accounting is off or holds no record of it."""
    if done.returncode != 0:
        return None  # "Slurm accounting storage is disabled", or slurmdbd down: nothing more to learn here
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if not lines:
        return None
    line = lines[-1]  # a requeued job has one line per run; the last is the latest
    listed, state, reason, node, partition, limit = _split(line, len(_SACCT_FIELDS), "sacct")
    _check_id(listed, job_id, line)
    return JobStatus(
        job_id=job_id,
        state=_state(state.split(" ", 1)[0], line),  # "CANCELLED by 1013"
        reason=reason,
        node=None if node in ("", "None assigned") else node,
        partition=partition or None,
        time_limit=_time(limit, line),
    )


def job_status(job_id: int, commands: SlurmCommands) -> JobStatus:
    """The job's status: squeue, else sacct, else GONE."""
    found = parse_squeue(run(squeue_invocation(job_id, commands), commands.timeout), job_id)
    if found is None and (invocation := sacct_invocation(job_id, commands)) is not None:
        found = parse_sacct(run(invocation, commands.timeout), job_id)
    return found or _gone(job_id)


async def async_job_status(job_id: int, commands: SlurmCommands) -> JobStatus:
    """The job's status, from the event loop."""
    return (await async_jobs_status([job_id], commands))[job_id]


async def async_jobs_status(job_ids: list[int], commands: SlurmCommands) -> dict[int, JobStatus]:
    """The status of every job in *job_ids* from one squeue (sacct, one by one, for those it forgot)."""
    done = await async_run(squeue_invocation(job_ids, commands), commands.timeout)
    found = parse_squeue_jobs(done, job_ids)
    for job_id in (n for n in job_ids if n not in found):
        if (invocation := sacct_invocation(job_id, commands)) is not None:
            found[job_id] = parse_sacct(await async_run(invocation, commands.timeout), job_id) or _gone(job_id)
        else:
            found[job_id] = _gone(job_id)
    return found


def job_named(name: str, commands: SlurmCommands) -> int | None:
    """The id of the caller's one job named *name* that Slurm has not ended (None: no such job)."""
    argv = [commands.squeue, "--me", f"--name={name}", "--noheader", "--format=%i"]
    done = run(Invocation(argv, commands.environment()), commands.timeout)
    if done.returncode != 0:
        raise SlurmError(f"squeue failed: {done.failure()}")
    ids = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    if len(ids) > 1 or not all(text.isdigit() for text in ids):
        raise SlurmOutputError(f"squeue listed {done.stdout.strip()!r} for the job name {name}")
    return int(ids[0]) if ids else None


def scancel_invocation(job_id: int, commands: SlurmCommands) -> Invocation:
    """``scancel`` of one job (whatever its state)."""
    return Invocation([commands.scancel, str(job_id)], commands.environment())


def check_cancel(done: Completed) -> None:
    """Accept scancel's success and a job that already ended; SlurmError with Slurm's words otherwise."""
    if done.returncode != 0 and "already completing or completed" not in done.stderr:
        raise SlurmError(f"scancel failed: {done.failure()}")


def cancel(job_id: int, commands: SlurmCommands) -> None:
    """Cancel the job (queued or running); a job that already ended is not an error."""
    check_cancel(run(scancel_invocation(job_id, commands), commands.timeout))


async def async_cancel(job_id: int, commands: SlurmCommands) -> None:
    """Cancel the job, from the event loop."""
    check_cancel(await async_run(scancel_invocation(job_id, commands), commands.timeout))


def _gone(job_id: int) -> JobStatus:
    return JobStatus(job_id=job_id, state=GONE, reason="Slurm no longer knows this job (ended before MinJobAge?)")


def _split(line: str, count: int, command: str) -> list[str]:
    fields = [field.strip() for field in line.split("|")]
    if len(fields) != count:
        raise SlurmOutputError(f"{command} printed {line!r}: expected {count} fields separated by |")
    return fields


def _check_id(listed: str, job_id: int, line: str) -> None:
    if listed != str(job_id):
        raise SlurmOutputError(f"asked Slurm for job {job_id}, it answered {line!r}")


def _state(text: str, line: str) -> str:
    if not _STATE.fullmatch(text):
        raise SlurmOutputError(f"{text!r} is not a Slurm job state (in {line!r})")
    return text


def _time(text: str, line: str) -> int | None:
    if text in _NO_TIME:
        return None
    try:
        return parse_duration(text)
    except ValueError:
        raise SlurmOutputError(f"{text!r} is not a Slurm time (in {line!r})") from None

"""Kernels in Slurm jobs: the host's limits, submission, a job's state, cancellation.

Used by the per-user kernel worker, as the user (``ssd.workers.kernel``'s Slurm placement); nothing here
talks to the broker. The pieces, in the order the worker calls them::

    config = SlurmConfig(enabled=True, ...)            # [slurm] of the host's configuration
    commands = SlurmCommands.from_config(config)       # sbatch, squeue, scancel (and sacct) found once
    resources = resolve(SlurmRequest(time="30"), config)   # SlurmLimitError names the limit
    job_id = await async_submit(JobSpec(command, resources, workdir, output, env), commands)
    state = kernel_state(await async_job_status(job_id, commands))   # queued / starting / dead, with reason
    await async_cancel(job_id, commands)

Each ``async_`` function has a synchronous twin without the prefix.
"""

from __future__ import annotations

from ssd.kernels.slurm.commands import SlurmCommands
from ssd.kernels.slurm.errors import SlurmError, SlurmLimitError, SlurmOutputError, SlurmUnavailable
from ssd.kernels.slurm.limits import SlurmConfig, SlurmRequest, SlurmResources, resolve
from ssd.kernels.slurm.query import GONE, JobStatus, async_cancel, async_job_status, cancel, job_status
from ssd.kernels.slurm.states import KernelJobState, kernel_state
from ssd.kernels.slurm.submit import JobSpec, async_submit, batch_script, submit

__all__ = [
    "GONE",
    "JobSpec",
    "JobStatus",
    "KernelJobState",
    "SlurmCommands",
    "SlurmConfig",
    "SlurmError",
    "SlurmLimitError",
    "SlurmOutputError",
    "SlurmRequest",
    "SlurmResources",
    "SlurmUnavailable",
    "async_cancel",
    "async_job_status",
    "async_submit",
    "batch_script",
    "cancel",
    "job_status",
    "kernel_state",
    "resolve",
    "submit",
]

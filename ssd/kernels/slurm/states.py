"""From Slurm's job state to ssd's kernel state: ``queued`` (with Slurm's reason and the job id),
``starting`` (the job runs; ``ready`` is the kernel service's word, once the kernel answers), ``dead``
(with why the job ended)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ssd.kernels.slurm.errors import SlurmOutputError
from ssd.kernels.slurm.query import GONE, JobStatus

__all__ = ["JobPhase", "KernelJobState", "kernel_state"]

JobPhase = Literal["queued", "starting", "dead"]

_QUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED", "STOPPED"}
_RUNNING = {"CONFIGURING", "RUNNING", "RESIZING", "SIGNALING"}
# Why the job ended, for a person; COMPLETING and STAGE_OUT are on the way to one of these.
_ENDED = {
    "COMPLETED": "the job ended: the kernel exited",
    "CANCELLED": "the job was cancelled (scancel)",
    "FAILED": "the job failed: the kernel exited with an error",
    "TIMEOUT": "the job reached its time limit",
    "NODE_FAIL": "the job's node failed",
    "PREEMPTED": "the job was preempted by another job",
    "BOOT_FAIL": "the job's node failed to boot",
    "DEADLINE": "the job missed its deadline",
    "OUT_OF_MEMORY": "the job ran out of memory",
    "SPECIAL_EXIT": "the job ended with a special exit",
    "REVOKED": "the job was revoked (federation)",
    "COMPLETING": "the job is ending",
    "STAGE_OUT": "the job is ending (staging out)",
    GONE: "Slurm no longer knows the job",
}
# A waiting job's reason code, in words; others are shown as Slurm gives them.
_WAITING = {
    "None": "waiting to be scheduled",
    "Resources": "waiting for resources",
    "Priority": "waiting behind jobs of higher priority",
    "Dependency": "waiting for another job",
    "BeginTime": "waiting for its start time",
    "JobHeldUser": "held by you",
    "JobHeldAdmin": "held by an administrator",
    "QOSMaxJobsPerUserLimit": "waiting: you run as many jobs as your QOS allows",
    "ReqNodeNotAvail": "waiting: the node it needs is not available",
    "PartitionDown": "waiting: the partition is down",
}


@dataclass(frozen=True)
class KernelJobState:
    """A kernel's state as its job tells it, with Slurm's own state and reason kept for display."""

    phase: JobPhase
    job_id: int
    reason: str  # for a person
    slurm_state: str
    slurm_reason: str
    node: str | None
    partition: str | None
    time_left: int | None
    final: bool  # Slurm will say no more (a dead job past COMPLETING)


def kernel_state(status: JobStatus) -> KernelJobState:
    """Map *status* to queued, starting or dead; a state this module does not know is a SlurmOutputError."""
    if status.state in _QUEUED:
        phase: JobPhase = "queued"
        reason = "suspended by Slurm" if status.state in ("SUSPENDED", "STOPPED") else _waiting(status.reason)
    elif status.state in _RUNNING:
        phase, reason = "starting", "the job is running on " + (status.node or "its node")
    elif status.state in _ENDED:
        phase, reason = "dead", _ended(status)
    else:
        raise SlurmOutputError(f"job {status.job_id} is in state {status.state}, which ssd does not know")
    return KernelJobState(
        phase=phase,
        job_id=status.job_id,
        reason=reason,
        slurm_state=status.state,
        slurm_reason=status.reason,
        node=status.node,
        partition=status.partition,
        time_left=status.time_left,
        final=phase == "dead" and status.state not in ("COMPLETING", "STAGE_OUT"),
    )


def _waiting(code: str) -> str:
    base = code.split(",", 1)[0]  # "ReqNodeNotAvail,_UnavailableNodes:vm"
    return _WAITING.get(base, f"waiting ({code})")


def _ended(status: JobStatus) -> str:
    text = _ENDED[status.state]
    if status.reason and status.reason != "None" and status.state != GONE:
        text += f" ({status.reason})"
    return text

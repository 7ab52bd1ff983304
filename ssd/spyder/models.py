"""What the plugin shows: hosts, environments, kernels, as small frozen records (no ssd reply dicts here).

``ssd.spyder.backend`` builds these from the client library's replies, so a
change in how the library types its replies stays in that one module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ssd.client.hostspec import HostSpec

__all__ = [
    "ConnectInfo",
    "EnvRow",
    "HostRow",
    "JobState",
    "KernelRow",
    "Progress",
    "SlurmHost",
    "StartedKernel",
    "Verdict",
]


@dataclass(frozen=True)
class HostRow:
    """A machine in the pane: found by discovery or added by hand."""

    key: str  # the pane's row key: the instance name, or what the user typed
    spec: HostSpec
    trust: str  # trusted | new | mismatched | unknown (added by hand, not asked yet)
    fingerprint: str = ""
    pinned: str | None = None
    os: str = ""
    cpus: str = ""
    load: str = ""
    kernels: str = ""
    local: bool = False
    discovered: bool = True


@dataclass(frozen=True)
class SlurmHost:
    """What a cluster's login node offers for kernels in Slurm jobs: partitions (empty: any), defaults, limits."""

    partitions: tuple[str, ...]
    default_partition: str
    default_time: str
    default_cpus: int
    default_mem: str
    max_cpus: int  # 0: no limit of the host's own
    max_gpus: int  # 0: GPUs may not be asked for


@dataclass(frozen=True)
class ConnectInfo:
    """A verified connection: the server's proven fingerprint, and the user this client is bound to (if any)."""

    fingerprint: str
    name: str
    user: str | None
    status: dict[str, str] = field(default_factory=dict)
    slurm: SlurmHost | None = None  # None: kernels run on the host itself only


@dataclass(frozen=True)
class Verdict:
    """Whether an environment can serve this Spyder, why not, and what to install to fix it."""

    ok: bool
    reason: str
    fix: str | None  # a requirement spec, e.g. spyder-kernels>=3.1.0,<3.2.0


@dataclass(frozen=True)
class EnvRow:
    """One environment of the logged-in user on a host."""

    name: str
    prefix: str
    kind: str
    python: str
    spyder_kernels: str
    ipykernel: str
    writable: bool
    verdict: Verdict


@dataclass(frozen=True)
class KernelRow:
    """One of the user's kernels on a host (no secrets)."""

    kernel_id: str
    name: str
    env: str
    kind: str
    state: str
    cwd: str
    leased: bool
    job_id: int | None = None  # a kernel in a Slurm job


@dataclass(frozen=True)
class JobState:
    """What the host last said of a kernel in a Slurm job (a ``kernel_state`` event), and the line to show."""

    kernel_id: str
    state: str  # queued | starting | ready | dead | ...
    job_id: int | None
    text: str  # e.g. "queued: job 12, waiting for resources (Slurm: PENDING)"


@dataclass(frozen=True)
class StartedKernel:
    """A kernel and the connection info this client reaches it by (classic keys plus CURVE keys)."""

    kernel: KernelRow
    connection: dict[str, Any]


@dataclass(frozen=True)
class Progress:
    """One ``env_progress`` event of an operation."""

    operation: str
    state: str  # running | done | failed | cancelled
    phase: str
    percent: float | None
    line: str

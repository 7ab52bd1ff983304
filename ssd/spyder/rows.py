"""The client library's replies and events as the plugin's records (``ssd.spyder.models``), in one place."""

from __future__ import annotations

from typing import Any

from ssd.client.discovery import DiscoveredHost
from ssd.ctl.slurmwait import describe
from ssd.replies import KernelDescription, ServerInfoReply
from ssd.spyder.models import EnvRow, HostRow, JobState, KernelRow, Progress, SlurmHost
from ssd.spyder.verdict import verdict

__all__ = ["env_row", "host_row", "job_state", "kernel_row", "progress", "slurm_host"]


def host_row(host: DiscoveredHost) -> HostRow:
    """A discovered host as the pane shows it."""
    txt = host.txt
    return HostRow(
        key=host.name,
        spec=host.spec,
        trust=str(host.trust),
        fingerprint=host.fingerprint,
        pinned=host.pinned,
        os=txt.get("os", ""),
        cpus=txt.get("cpus", ""),
        load=txt.get("load", ""),
        kernels=txt.get("kernels", ""),
        local=host.local,
    )


def kernel_row(entry: KernelDescription) -> KernelRow:
    """One kernel of a reply."""
    return KernelRow(
        kernel_id=entry.kernel_id,
        name=entry.name,
        env=entry.env_name or entry.env,
        kind=entry.kind,
        state=entry.state,
        cwd=entry.cwd,
        leased=bool(entry.lease),
        job_id=entry.job_id,
    )


def env_row(entry: dict[str, Any], spyder_version: str) -> EnvRow:
    """One environment of env_list, with the verdict for this Spyder."""
    return EnvRow(
        name=str(entry["name"]),
        prefix=str(entry["prefix"]),
        kind=str(entry.get("kind") or ""),
        python=str(entry.get("python") or ""),
        spyder_kernels=str(entry.get("spyder_kernels") or ""),
        ipykernel=str(entry.get("ipykernel") or ""),
        writable=bool(entry.get("writable")),
        verdict=verdict(entry, spyder_version),
    )


def progress(content: dict[str, Any]) -> Progress:
    """One ``env_progress`` event."""
    percent = content.get("percent")
    return Progress(
        operation=str(content.get("operation", "")),
        state=str(content.get("state", "running")),
        phase=str(content.get("phase", "")),
        percent=float(percent) if isinstance(percent, int | float) else None,
        line=str(content.get("line") or ""),
    )


def slurm_host(info: ServerInfoReply) -> SlurmHost | None:
    """What the host offers for kernels in Slurm jobs (None: it runs kernels on itself only)."""
    offer = info.slurm
    if "slurm" not in info.placements or offer is None:
        return None
    return SlurmHost(
        partitions=tuple(info.slurm_partitions),
        default_partition=offer.default_partition,
        default_time=offer.default_time,
        default_cpus=offer.default_cpus,
        default_mem=offer.default_mem,
        max_cpus=offer.max_cpus,
        max_gpus=offer.max_gpus,
    )


def job_state(content: dict[str, Any]) -> JobState:
    """A ``kernel_state`` event of a kernel in a Slurm job, with the line ``ssd-ctl start --slurm`` shows."""
    job, state = content.get("job_id"), str(content.get("state", ""))
    text = describe(content)
    if text is None and state == "dead":
        where = f"job {job}" if job else "job"
        text = f"the kernel's Slurm {where} ended: {content.get('reason') or 'no reason given'}"
    return JobState(str(content.get("kernel_id", "")), state, int(job) if job else None, text or state)

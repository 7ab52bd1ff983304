"""The host's ``[slurm]`` limits and the check of a user's resource options against them.

``SlurmConfig`` has the shape of a section of ``ssd.config`` (frozen, strict, documented fields) so that
the configuration can hold it as ``[slurm]``; ``resolve`` turns what a user asked for into the
``SlurmResources`` that go to ``sbatch``, or refuses with a ``SlurmLimitError`` that names the limit.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated

import msgspec

from ssd.kernels.slurm.errors import SlurmLimitError, SlurmUnavailable
from ssd.kernels.slurm.units import format_duration, parse_duration, parse_memory

__all__ = ["SlurmConfig", "SlurmRequest", "SlurmResources", "resolve"]

_PARTITION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
Count = Annotated[int, msgspec.Meta(ge=0)]


def _doc(text: str) -> msgspec.Meta:
    return msgspec.Meta(description=text)


class SlurmConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[slurm]``: whether kernels may run in Slurm jobs, and the limits on what a user may ask for."""

    enabled: Annotated[bool, _doc("Offer kernels in Slurm jobs on this host (a login node).")] = False
    default_partition: Annotated[str, _doc("Partition when the user names none; empty = Slurm's default.")] = ""
    partitions: Annotated[list[str], _doc("Partitions users may ask for; empty = any (Slurm's own rules).")] = []
    default_time: Annotated[str, _doc("Time limit when the user gives none (Slurm notation: 90, 1:30:00).")] = "1:00:00"
    max_time: Annotated[str, _doc("Longest time limit a user may ask for; empty = no limit of ssd's own.")] = ""
    default_cpus: Annotated[int, msgspec.Meta(ge=1, description="CPUs per kernel when the user gives none.")] = 1
    max_cpus: Annotated[Count, _doc("Most CPUs a kernel may ask for; 0 = no limit of ssd's own.")] = 0
    default_mem: Annotated[str, _doc("Memory when the user gives none (4G, 512M); empty = Slurm's default.")] = ""
    max_mem: Annotated[str, _doc("Most memory a kernel may ask for (e.g. 64G); empty = no limit of ssd's own.")] = ""
    max_gpus: Annotated[Count, _doc("Most GPUs a kernel may ask for; 0 = none may be asked for.")] = 0
    sbatch: Annotated[str, _doc("Path of sbatch; empty = found on PATH.")] = ""
    squeue: Annotated[str, _doc("Path of squeue; empty = found on PATH.")] = ""
    scancel: Annotated[str, _doc("Path of scancel; empty = found on PATH.")] = ""
    sacct: Annotated[str, _doc("Path of sacct (why a job ended, once squeue forgot it); empty = PATH, if any.")] = ""
    conf: Annotated[str, _doc("slurm.conf the commands read (SLURM_CONF); empty = Slurm's own default.")] = ""
    command_timeout: Annotated[float, msgspec.Meta(gt=0, description="Seconds a Slurm command may take.")] = 30.0
    job_folder: Annotated[str, _doc("Folder of the kernel jobs (~ = home), shared with the nodes.")] = (
        "~/.local/state/ssd/jobs"
    )
    login_address: Annotated[str, _doc("This host's address as the nodes reach it; empty = its name resolved.")] = ""

    def __post_init__(self) -> None:
        """Refuse notations Slurm would not read, naming the key."""
        for key in ("default_time", "max_time"):
            value = getattr(self, key)
            if value or key == "default_time":
                _checked(f"slurm.{key}", value, parse_duration)
        for key in ("default_mem", "max_mem"):
            if getattr(self, key):
                _checked(f"slurm.{key}", getattr(self, key), parse_memory)
        for partition in [self.default_partition, *self.partitions]:
            if partition and not _PARTITION.fullmatch(partition):
                raise ValueError(f"slurm partition name {partition!r} is not valid")


class SlurmRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What a user asked for (``kernel_start``'s resource options); None means the host's default."""

    partition: str | None = None
    time: str | None = None
    cpus: int | None = None
    mem: str | None = None
    gpus: int | None = None


class SlurmResources(msgspec.Struct, frozen=True, kw_only=True):
    """Checked resources for one job: what ``sbatch`` is given (None = leave it to Slurm)."""

    partition: str | None
    time_seconds: int
    cpus: int
    mem_mib: int | None
    gpus: int

    @property
    def time(self) -> str:
        """The time limit in Slurm's notation."""
        return format_duration(self.time_seconds)


def resolve(request: SlurmRequest, config: SlurmConfig) -> SlurmResources:
    """Fill *request*'s gaps with the host's defaults and check it against its limits, before any submission."""
    if not config.enabled:
        raise SlurmUnavailable("this host does not offer kernels in Slurm jobs ([slurm] enabled = false)")
    return SlurmResources(
        partition=_partition(request.partition, config),
        time_seconds=_time(request.time, config),
        cpus=_cpus(request.cpus, config),
        mem_mib=_mem(request.mem, config),
        gpus=_gpus(request.gpus, config),
    )


def _checked(key: str, text: str, parse: Callable[[str], int]) -> None:
    try:
        parse(text)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None


def _partition(asked: str | None, config: SlurmConfig) -> str | None:
    partition = asked or config.default_partition or None
    if partition is None:
        return None
    if not _PARTITION.fullmatch(partition):
        raise SlurmLimitError(f"partition {partition!r} is not a valid partition name")
    if config.partitions and partition not in config.partitions:
        allowed = ", ".join(config.partitions)
        raise SlurmLimitError(f"partition {partition} is not allowed here (slurm.partitions = {allowed})")
    return partition


def _time(asked: str | None, config: SlurmConfig) -> int:
    text = asked if asked is not None else config.default_time
    seconds = _bounded("time", text, parse_duration, "max_time", config.max_time)
    if seconds < 60:
        raise SlurmLimitError(f"time {text} is under Slurm's smallest limit of one minute")
    return seconds


def _cpus(asked: int | None, config: SlurmConfig) -> int:
    cpus = config.default_cpus if asked is None else asked
    if cpus < 1:
        raise SlurmLimitError(f"cpus {cpus}: a kernel needs at least one CPU")
    if config.max_cpus and cpus > config.max_cpus:
        raise SlurmLimitError(f"cpus {cpus} is over this host's limit (slurm.max_cpus = {config.max_cpus})")
    return cpus


def _mem(asked: str | None, config: SlurmConfig) -> int | None:
    text = asked if asked is not None else config.default_mem
    if not text:
        return None
    mib = _bounded("mem", text, parse_memory, "max_mem", config.max_mem)
    if mib < 1:
        raise SlurmLimitError(f"mem {text}: a kernel needs some memory (Slurm reads 0 as the whole node)")
    return mib


def _bounded(name: str, text: str, parse: Callable[[str], int], limit_key: str, limit: str) -> int:
    """*text* read with *parse*; refused when malformed or over the limit ``slurm.<limit_key>`` (when set)."""
    try:
        value = parse(text)
    except ValueError as exc:
        raise SlurmLimitError(f"{name}: {exc}") from None
    if limit and value > parse(limit):
        raise SlurmLimitError(f"{name} {text} is over this host's limit (slurm.{limit_key} = {limit})")
    return value


def _gpus(asked: int | None, config: SlurmConfig) -> int:
    gpus = asked or 0
    if gpus < 0:
        raise SlurmLimitError(f"gpus {gpus} is negative")
    if gpus > config.max_gpus:
        raise SlurmLimitError(f"gpus {gpus} is over this host's limit (slurm.max_gpus = {config.max_gpus})")
    return gpus

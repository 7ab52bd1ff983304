"""What a kernelspec's ssd-provisioner stanza says, and checking it before a start."""

from __future__ import annotations

from typing import Any

import msgspec

from ssd.errors import ErrorCode, SSDError
from ssd.kernels.slurm.errors import SlurmLimitError, SlurmUnavailable
from ssd.messages import KERNEL_KINDS, SlurmOptions
from ssd.replies import ServerInfoReply

__all__ = ["KINDS", "PROVISIONER_NAME", "check_config", "check_offer", "check_slurm"]

PROVISIONER_NAME = "ssd-provisioner"
KINDS = KERNEL_KINDS


def check_config(host: str, env: str, kind: str) -> None:
    """Raise an error naming each missing or wrong field of the stanza, and the command that rewrites it."""
    problems = []
    if not host:
        problems.append("no host")
    if not env:
        problems.append("no env")
    if kind not in KINDS:
        problems.append(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    if problems:
        raise SSDError(
            f"the kernelspec's ssd-provisioner config is incomplete ({'; '.join(problems)}); "
            f"write it again with: ssd-ctl kernelspec install {host or 'HOST'} ENV",
            code=ErrorCode.KERNELSPEC_INVALID,
        )


def check_slurm(slurm: dict[str, Any] | None, host: str) -> None:
    """Refuse a stanza's ``slurm`` resources that kernel_start would not take (only partition, time, cpus, mem,
    gpus, each of its shape); None: the kernel runs on the host itself."""
    if slurm is None:
        return
    try:
        msgspec.convert(slurm, SlurmOptions)
    except msgspec.ValidationError as exc:
        raise SSDError(
            f"the kernelspec's slurm config is invalid ({exc}); write it again with: "
            f"ssd-ctl kernelspec install {host or 'HOST'} ENV --slurm ...",
            code=ErrorCode.KERNELSPEC_INVALID,
        ) from None


def check_offer(info: ServerInfoReply, host: str, slurm: dict[str, Any]) -> None:
    """Refuse Slurm resources that *host* does not offer, by its ``server_info`` (ssd-ctl kernelspec install)."""
    if "slurm" not in info.placements:
        raise SlurmUnavailable(
            f"{host} does not offer kernels in Slurm jobs (kernels run: {', '.join(info.placements)}; "
            f"see: ssd-ctl info {host})"
        )
    partition = slurm.get("partition")
    if partition and info.slurm_partitions and partition not in info.slurm_partitions:
        raise SlurmLimitError(
            f"{host} does not offer the Slurm partition {partition!r} (it offers: {', '.join(info.slurm_partitions)})"
        )

"""What a kernelspec's ssd-provisioner stanza says, and checking it before a start."""

from __future__ import annotations

from ssd.errors import ErrorCode, SSDError
from ssd.messages import KERNEL_KINDS

__all__ = ["KINDS", "PROVISIONER_NAME", "check_config"]

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

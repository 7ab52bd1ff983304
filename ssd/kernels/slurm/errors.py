"""Errors of the Slurm placement, each with a stable code a client can show to a person.

::

    SSDError
    └── SlurmError              slurm_error        a Slurm command failed (its own message is kept)
        ├── SlurmUnavailable    slurm_unavailable  disabled on this host, or a command is missing
        ├── SlurmLimitError     slurm_limit        a resource option is outside the host's [slurm] limits
        └── SlurmOutputError    slurm_output       a Slurm command printed something this module cannot read
"""

from __future__ import annotations

from ssd.errors import ErrorCode, SSDError

__all__ = ["SlurmError", "SlurmLimitError", "SlurmOutputError", "SlurmUnavailable"]


class SlurmError(SSDError):
    """A Slurm command refused or failed; the message carries Slurm's own words."""

    code = ErrorCode.SLURM_ERROR


class SlurmUnavailable(SlurmError):
    """Slurm placement is disabled here, or one of its commands cannot be found."""

    code = ErrorCode.SLURM_UNAVAILABLE


class SlurmLimitError(SlurmError):
    """A resource option is malformed or outside a limit of ``[slurm]``, which the message names."""

    code = ErrorCode.SLURM_LIMIT


class SlurmOutputError(SlurmError):
    """A Slurm command's output did not have the expected shape (a version this module does not know)."""

    code = ErrorCode.SLURM_OUTPUT

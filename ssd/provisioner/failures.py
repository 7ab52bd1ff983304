"""The one place the provisioner turns an exception into what Jupyter shows.

A start or restart that fails raises ``KernelStartError`` (``ssd.kernelerrors``):
Jupyter Server answers its text in the REST reply and JupyterLab shows it.
Any exception becomes one: ssd's own, zmq's, the OS's and timeouts through
``ssd.errors.translate``, and a bug as "internal error" (its traceback in
the log), never Jupyter's bare "Unhandled error". A host that cannot be asked
about a running kernel is warned about once (``warning``), not every poll.
"""

from __future__ import annotations

import logging

from ssd.errors import ErrorCode, SSDError, TransportError, translate
from ssd.kernelerrors import KernelStartError, explain

__all__ = ["as_ssd_error", "explained", "warning"]

log = logging.getLogger(__name__)


def as_ssd_error(exc: BaseException) -> SSDError:
    """*exc* as an SSDError: translated if foreign, an internal error (logged with its traceback) if a bug."""
    error = translate(exc)
    if error is not None:
        return error
    log.error("ssd-provisioner: internal error", exc_info=exc)
    return SSDError(f"internal error in ssd-provisioner ({type(exc).__name__}: {exc})", code=ErrorCode.ERROR)


def explained(exc: BaseException, *, host: str, env: str, doing: str) -> KernelStartError:
    """The error Jupyter shows: what could not be done on which host, why, and the command that fixes it."""
    return explain(as_ssd_error(exc), host=host or "HOST", env=env, doing=doing)


def warning(exc: SSDError, kernel_id: str, host: str) -> tuple[str, str]:
    """The kind of trouble (one warning per kind) and the warning about a kernel its host does not answer for."""
    kind = "unreachable" if isinstance(exc, TransportError) else "refused"  # then not authorized, then throttled...
    return kind, (
        f"ssd-provisioner: cannot reach kernel {kernel_id} on {host}: {exc}; "
        "Jupyter counts it as running, and it keeps its lease only if the host can be reached again in time"
    )

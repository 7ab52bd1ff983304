"""What to tell a Spyder user about an error: a sentence that says what happened and what to do."""

from __future__ import annotations

from ssd.errors import ErrorCode, RemoteError, RequestTimeout, ServerKeyMismatch, ServerUntrusted, SSDError, Unreachable

__all__ = ["advice"]

_BY_CODE: dict[str, str] = {
    ErrorCode.AUTH_FAILED: "wrong user name or password (or the account may not log in there). "
    "Check them and try again.",
    ErrorCode.ACCOUNT_DISABLED: "the account is locked or expired on that machine: ask its administrator.",
    ErrorCode.NOT_AUTHORIZED: "you are not logged in there (or your session ended): log in again.",
    ErrorCode.ENV_NOT_FOUND: "that environment is gone: refresh the environment list.",
    ErrorCode.KERNEL_NOT_FOUND: "that kernel is no longer on the host: refresh the kernel list.",
    ErrorCode.TOO_MANY_REQUESTS: "the host is busy: wait a moment and try again.",
    ErrorCode.SERVICE_UNAVAILABLE: "the host's workers are not ready: try again in a few seconds.",
}


def advice(error: BaseException, host: str = "the host") -> str:
    """*error* as a sentence for a dialog or the status bar: what happened, then what to do."""
    if isinstance(error, ServerKeyMismatch):
        return (
            f"{error.message}\n\nNothing was sent to {host}. "
            "Do not log in until the administrator confirms the new key."
        )
    if isinstance(error, ServerUntrusted):
        return f"{host} is not trusted yet (fingerprint {error.fingerprint}): trust it first."
    if isinstance(error, Unreachable):
        return f"{error.message}. Is ssd running on {host}? Check the address and port, or ask its administrator."
    if isinstance(error, RequestTimeout):
        return f"{error.message}. The host may be overloaded or the network down: try again."
    if isinstance(error, RemoteError):
        if error.code == ErrorCode.LOGIN_THROTTLED:
            wait = float(error.details.get("retry_after", 0) or 0)
            return f"too many failed logins: wait {wait:.0f} s, then try again."
        fix = _BY_CODE.get(error.code)
        return f"{error.message}" + (f" — {fix}" if fix else "")
    if isinstance(error, SSDError):
        return error.message
    return f"unexpected error: {error!r}. Please report it with Spyder's log."

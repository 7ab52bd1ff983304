"""The ssd exception tree, with stable error codes a client can show to a person.

::

    SSDError                      code             exit code (ssd-ctl)
    ├── ConfigError               config_invalid   2
    ├── KeyFileError              key_file_invalid 2
    ├── RemoteError               (server's ename) 1
    ├── TransportError                             3
    │   ├── Unreachable           unreachable
    │   └── RequestTimeout        timeout
    └── TrustError                                 4
        ├── ServerUntrusted       server_untrusted
        ├── ServerKeyMismatch     server_key_mismatch
        └── CertificateError      certificate_invalid

Every error carries ``code`` (stable, machine readable) and ``message`` (for a
person). Foreign exceptions (zmq, OS, PAM) are translated at the boundary.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CertificateError",
    "ConfigError",
    "KeyFileError",
    "RemoteError",
    "RequestTimeout",
    "SSDError",
    "ServerKeyMismatch",
    "ServerUntrusted",
    "TransportError",
    "TrustError",
    "Unreachable",
]


class SSDError(Exception):
    """Root of every error ssd raises on purpose."""

    code: str = "error"
    exit_code: int = 1

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class ConfigError(SSDError):
    """The configuration (file, environment or flags) is invalid."""

    code = "config_invalid"
    exit_code = 2


class KeyFileError(SSDError):
    """A key file is missing, malformed or has unsafe permissions."""

    code = "key_file_invalid"
    exit_code = 2


class RemoteError(SSDError):
    """The server answered a request with an error reply."""

    exit_code = 1

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, code=code)
        self.details = details or {}  # the whole error reply, e.g. retry_after


class TransportError(SSDError):
    """The server could not be reached or did not answer in time."""

    exit_code = 3


class Unreachable(TransportError):
    """No CURVE connection to the server could be made."""

    code = "unreachable"


class RequestTimeout(TransportError):
    """The server accepted the connection but did not answer in time."""

    code = "timeout"


class TrustError(SSDError):
    """The server's identity could not be verified."""

    exit_code = 4


class ServerUntrusted(TrustError):
    """The server's key is not yet pinned in known hosts."""

    code = "server_untrusted"

    def __init__(self, message: str, *, fingerprint: str, public_key: bytes) -> None:
        super().__init__(message)
        self.fingerprint = fingerprint
        self.public_key = public_key


class ServerKeyMismatch(TrustError):
    """The server's key differs from the pinned one: possibly an impostor."""

    code = "server_key_mismatch"


class CertificateError(TrustError):
    """A certificate is unusable: wrong key or name, expired, or not from the configured CA."""

    code = "certificate_invalid"

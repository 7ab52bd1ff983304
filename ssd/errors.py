"""The ssd exception tree, with stable error codes a client can show to a person.

::

    SSDError                      code             exit code (ssd-ctl)
    ├── ConfigError               config_invalid   2
    ├── KeyFileError              key_file_invalid 2
    ├── LocalError                local_error      1   (this machine: a file, a socket, a resource)
    ├── RemoteError               (server's ename) 1
    ├── TransportError                             3
    │   ├── Unreachable           unreachable
    │   └── RequestTimeout        timeout
    └── TrustError                                 4
        ├── ServerUntrusted       server_untrusted
        ├── ServerKeyMismatch     server_key_mismatch
        └── CertificateError      certificate_invalid

Every error carries ``code`` (stable, machine readable, an ``ErrorCode``) and
``message`` (for a person). Foreign exceptions (zmq, OS, timeouts) become one of
these by ``translate``, at each boundary that shows errors to a person
(``ssd.ctl.main``, ``ssd.provisioner.failures``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from enum import StrEnum
from typing import Any

import zmq

__all__ = [
    "CertificateError",
    "ConfigError",
    "ErrorCode",
    "KeyFileError",
    "LocalError",
    "RemoteError",
    "RequestTimeout",
    "SSDError",
    "ServerKeyMismatch",
    "ServerUntrusted",
    "TransportError",
    "TrustError",
    "Unreachable",
    "key_not_authorized",
    "translate",
]


class ErrorCode(StrEnum):
    """Every stable error code: ``SSDError.code`` and the ``ename`` of an error reply (the wire value)."""

    meaning: str

    def __new__(cls, value: str, meaning: str) -> ErrorCode:
        member = str.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member

    # -- the protocol: any request
    BAD_MESSAGE = "bad_message", "the message is not a valid ssd message (frames, signature, header)"
    BAD_REQUEST = "bad_request", "the request's content does not fit its message type"
    UNKNOWN_MESSAGE_TYPE = "unknown_message_type", "this server does not know the message type"
    NOT_AUTHORIZED = "not_authorized", "the request needs a login (or the session ended) or rights this user lacks"
    SERVICE_UNAVAILABLE = "service_unavailable", "the service is not enabled or its worker is not ready"
    WORKER_LOST = "worker_lost", "the worker handling the request stopped before answering; try again"
    TOO_MANY_REQUESTS = "too_many_requests", "this client has too many requests in progress"
    SHUTTING_DOWN = "shutting_down", "the server is shutting down"
    INTERNAL_ERROR = "internal_error", "the server failed; details are in its log"
    # -- logging in and keys
    AUTH_FAILED = "auth_failed", "a login was refused, whatever the reason"
    LOGIN_THROTTLED = "login_throttled", "too many failed logins: wait before trying again"
    ACCOUNT_DISABLED = "account_disabled", "the account is locked, expired or gone (told only to its key's holder)"
    NOT_ALLOWED = "not_allowed", "the host's configuration does not allow this for the user"
    KEY_ADD_FAILED = "key_add_failed", "the authorized keys file could not be written"
    KEY_REMOVE_FAILED = "key_remove_failed", "the authorized keys file could not be changed"
    # -- environments
    ENV_NOT_FOUND = "env_not_found", "no environment of that name or prefix on the host"
    ENV_AMBIGUOUS = "env_ambiguous", "several environments have that name: give the prefix"
    ENV_REFUSED = "env_refused", "the environment request was refused (a name, package or channel not allowed)"
    ENV_TOOL_FAILED = "env_tool_failed", "conda, mamba or pip failed while changing an environment"
    # -- kernels
    KERNEL_NOT_FOUND = "kernel_not_found", "the user has no kernel with that id on the host"
    KERNEL_BUSY = "kernel_busy", "the kernel is starting, restarting or stopping: try again in a moment"
    KERNEL_DEAD = "kernel_dead", "the kernel's process is not running"
    KERNEL_SILENT = "kernel_silent", "the kernel did not answer on its control channel"
    KERNEL_START_FAILED = "kernel_start_failed", "the kernel process could not be started or did not answer"
    KERNEL_PACKAGE_MISSING = "kernel_package_missing", "the environment lacks ipykernel or spyder-kernels"
    LIMIT_REACHED = "limit_reached", "the host or the user runs as many kernels as allowed"
    CWD_REFUSED = "cwd_refused", "the kernel's working folder does not exist or may not be entered"
    ENV_VAR_REFUSED = "env_var_refused", "an environment variable for the kernel is not allowed on the host"
    UNSAFE_SOCKET_DIR = "unsafe_socket_dir", "the kernel's socket folder is not private to the user"
    UNSUPPORTED_SIGNAL = "unsupported_signal", "that signal cannot be sent to a remote kernel"
    # -- the client side
    UNREACHABLE = "unreachable", "no encrypted connection to the server could be made"
    TIMEOUT = "timeout", "the server did not answer in time"
    SERVER_UNTRUSTED = "server_untrusted", "the server's key is not pinned in known hosts yet"
    SERVER_KEY_MISMATCH = "server_key_mismatch", "the server's key differs from the pinned one"
    CERTIFICATE_INVALID = "certificate_invalid", "a certificate has the wrong key or name, expired or has another CA"
    BAD_REPLY = "bad_reply", "the server's reply is malformed"
    TUNNEL_BUSY = "tunnel_busy", "a tunnel to that kernel is already open here"
    KERNELSPEC_INVALID = "kernelspec_invalid", "a kernelspec's ssd-provisioner stanza is incomplete or wrong"
    KERNELSPEC_WRITE_FAILED = "kernelspec_write_failed", "a kernelspec could not be written"
    LOCAL_ERROR = "local_error", "this machine refused an operation (a file, a socket, a permission)"
    USAGE = "usage", "the command line is wrong"
    NOT_FOUND = "not_found", "the named thing (a known host, a user, an operation) does not exist"
    # -- kernels in Slurm jobs
    SLURM_ERROR = "slurm_error", "a Slurm command refused or failed; the message carries Slurm's own words"
    SLURM_UNAVAILABLE = "slurm_unavailable", "Slurm placement is disabled on this host, or a Slurm command is missing"
    SLURM_LIMIT = "slurm_limit", "a resource option is malformed or outside the host's [slurm] limits"
    SLURM_OUTPUT = "slurm_output", "a Slurm command printed something ssd cannot read"
    # -- administration
    CONFIG_INVALID = "config_invalid", "the configuration (file, environment or flags) is invalid"
    KEY_FILE_INVALID = "key_file_invalid", "a key file is missing, malformed or has unsafe permissions"
    NOT_ROOT = "not_root", "the command needs root"
    NOT_INITIALIZED = "not_initialized", "the daemon's directories or certificate are not made yet: run ssd init"
    ERROR = "error", "an error without a more specific code"

    def describe(self) -> str:
        """``code: meaning``, a line of the protocol's error table."""
        return f"{self.value}: {self.meaning}"


class SSDError(Exception):
    """Root of every error ssd raises on purpose."""

    code: str = ErrorCode.ERROR  # a str: a RemoteError carries what the server said, known or not
    exit_code: int = 1

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class ConfigError(SSDError):
    """The configuration (file, environment or flags) is invalid."""

    code = ErrorCode.CONFIG_INVALID
    exit_code = 2


class KeyFileError(SSDError):
    """A key file is missing, malformed or has unsafe permissions."""

    code = ErrorCode.KEY_FILE_INVALID
    exit_code = 2


class LocalError(SSDError):
    """This machine refused an operation: a file that cannot be written, a socket, a resource limit."""

    code = ErrorCode.LOCAL_ERROR


class RemoteError(SSDError):
    """The server answered a request with an error reply."""

    exit_code = 1

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code  # the reply's ename: an ErrorCode value, unless the server is newer than this client
        self.details = details or {}  # the whole error reply, e.g. retry_after


class TransportError(SSDError):
    """The server could not be reached or did not answer in time."""

    exit_code = 3


class Unreachable(TransportError):
    """No CURVE connection to the server could be made."""

    code = ErrorCode.UNREACHABLE


class RequestTimeout(TransportError):
    """The server accepted the connection but did not answer in time."""

    code = ErrorCode.TIMEOUT


class TrustError(SSDError):
    """The server's identity could not be verified."""

    exit_code = 4


class ServerUntrusted(TrustError):
    """The server's key is not yet pinned in known hosts."""

    code = ErrorCode.SERVER_UNTRUSTED

    def __init__(self, message: str, *, fingerprint: str, public_key: bytes) -> None:
        super().__init__(message)
        self.fingerprint = fingerprint
        self.public_key = public_key


class ServerKeyMismatch(TrustError):
    """The server's key differs from the pinned one: possibly an impostor."""

    code = ErrorCode.SERVER_KEY_MISMATCH


class CertificateError(TrustError):
    """A certificate is unusable: wrong key or name, expired, or not from the configured CA."""

    code = ErrorCode.CERTIFICATE_INVALID


@contextlib.contextmanager
def key_not_authorized(message: str) -> Iterator[None]:
    """Around a key login: the host's ``auth_failed`` becomes ``not_authorized`` with *message*, which names the fix."""
    try:
        yield
    except RemoteError as exc:
        if exc.code != ErrorCode.AUTH_FAILED:
            raise
        raise SSDError(message, code=ErrorCode.NOT_AUTHORIZED) from None


def translate(exc: BaseException) -> SSDError | None:
    """*exc* as the SSDError a person is shown (itself if it is one); None for an exception that is a bug."""
    if isinstance(exc, SSDError):
        return exc
    if isinstance(exc, TimeoutError):  # asyncio's too
        return RequestTimeout(f"no answer in time{_detail(exc)}")
    if isinstance(exc, ConnectionError):
        return Unreachable(f"the connection failed: {_os_text(exc)}")
    if isinstance(exc, OSError):
        return LocalError(_os_text(exc))
    if isinstance(exc, zmq.ZMQError):
        if exc.errno == zmq.EAGAIN:
            return RequestTimeout(f"no answer in time (ZeroMQ: {exc.strerror})")
        return LocalError(f"ZeroMQ: {exc.strerror}")
    return None


def _os_text(exc: OSError) -> str:
    """``strerror: filename`` as the shell says it, else the exception's own text."""
    text = exc.strerror or str(exc) or type(exc).__name__
    return f"{exc.filename}: {text}" if exc.filename else text


def _detail(exc: BaseException) -> str:
    return f" ({exc})" if str(exc) else ""

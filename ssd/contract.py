"""The registry of message types: the one contract between clients, the broker and its workers.

For each request type: its request struct (``ssd.messages``), its reply struct
(``ssd.replies``), who serves it (the broker itself, or a worker service), the
authorization it needs, whether the bound user's own worker serves it, and the
client method that sends it. The broker's route table (``ssd.broker.dispatch``),
each worker's handlers (``ssd.workers.base.Worker.handlers``, checked at start)
and the client's methods (``ssd.client``) derive from it; ``docs/protocol.md`` is
generated from it (``python -m ssd.contract_doc``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ssd import messages as m
from ssd import replies as r

__all__ = [
    "BROKER",
    "MESSAGES",
    "Auth",
    "MessageType",
    "client_types",
    "reply_struct",
    "served_by",
]

Q = TypeVar("Q", bound=m.RequestContent)
R = TypeVar("R", bound=r.Reply)

# The server name of a type the broker answers itself (no worker).
BROKER = "broker"


class Auth(enum.Enum):
    """What the sender of a request type must be."""

    PUBLIC = "public"  # any CURVE client, before login
    USER = "user"  # a client key bound to a Unix user (login or authorized key)
    INTERNAL = "internal"  # the broker alone, to a worker: a client sending it gets unknown_message_type


@dataclass(frozen=True)
class MessageType(Generic[Q, R]):
    """One request type and everything that serves it."""

    msg_type: str
    request: type[Q]
    reply: type[R]
    auth: Auth
    service: str | None = None  # the worker service; None: the broker answers it itself
    per_user: bool = False  # served by the bound user's own worker, running as that user
    client: str | None = None  # the client method (AsyncClient and Client) that sends it

    def __post_init__(self) -> None:
        if not self.msg_type.endswith("_request"):
            raise ValueError(f"{self.msg_type}: a request type ends with _request")
        if self.per_user and self.service is None:
            raise ValueError(f"{self.msg_type}: only a worker service can be per user")
        if (self.client is None) != (self.auth is Auth.INTERNAL):
            raise ValueError(f"{self.msg_type}: every type a client may send has a client method, and only those")

    @property
    def server(self) -> str:
        """Who serves it: ``broker`` or the worker service's name."""
        return self.service or BROKER

    @property
    def reply_type(self) -> str:
        """The reply's msg_type (``ping_request`` -> ``ping_reply``)."""
        return self.msg_type.removesuffix("_request") + "_reply"


def _broker(name: str, request: type[Q], reply: type[R], auth: Auth = Auth.USER) -> MessageType[Q, R]:
    """A type the broker answers itself; its client method is *name*."""
    return MessageType(f"{name}_request", request, reply, auth, client=name)


def _worker(
    service: str, name: str, request: type[Q], reply: type[R], auth: Auth = Auth.USER, *, per_user: bool = False
) -> MessageType[Q, R]:
    """A type a worker of *service* serves; its client method is *name*."""
    return MessageType(f"{name}_request", request, reply, auth, service, per_user, name)


def _own(service: str, name: str, request: type[Q], reply: type[R]) -> MessageType[Q, R]:
    """A type the bound user's own worker of *service* serves, running as that user (started on first use)."""
    return _worker(service, name, request, reply, per_user=True)


PING = _broker("ping", m.PingRequest, r.PingReply, Auth.PUBLIC)
SERVER_INFO = _broker("server_info", m.ServerInfoRequest, r.ServerInfoReply, Auth.PUBLIC)
# The broker throttles logins before they reach the auth pool (ssd.broker.limiter).
LOGIN = _worker("auth", "login", m.LoginRequest, r.LoginReply, Auth.PUBLIC)
LOGOUT = _broker("logout", m.LogoutRequest, r.LogoutReply)
WHOAMI = _broker("whoami", m.WhoamiRequest, r.WhoamiReply)
KEY_ADD = _worker("auth", "key_add", m.KeyAddRequest, r.KeyAddReply)
KEY_REMOVE = _worker("auth", "key_remove", m.KeyRemoveRequest, r.KeyRemoveReply)
# The broker asks the auth pool whether a logged-in account may still log in (ssd.broker.accounts).
ACCOUNT_CHECK = MessageType("account_check_request", m.AccountCheckRequest, r.AccountCheckReply, Auth.INTERNAL, "auth")
ENV_LIST = _own("env", "env_list", m.EnvListRequest, r.EnvListReply)
ENV_INFO = _own("env", "env_info", m.EnvInfoRequest, r.EnvInfoReply)
ENV_CREATE = _own("env", "env_create", m.EnvCreateRequest, r.EnvOperationReply)
ENV_INSTALL = _own("env", "env_install", m.EnvInstallRequest, r.EnvOperationReply)
ENV_REMOVE = _own("env", "env_remove", m.EnvRemoveRequest, r.EnvOperationReply)
ENV_CANCEL = _own("env", "env_cancel", m.EnvCancelRequest, r.EnvCancelReply)
# kernel_start also counts against the host's limit (ssd.broker.admission).
KERNEL_START = _own("kernel", "kernel_start", m.KernelStartRequest, r.KernelStartReply)
KERNEL_LIST = _own("kernel", "kernel_list", m.KernelListRequest, r.KernelListReply)
KERNEL_INFO = _own("kernel", "kernel_info", m.KernelInfoRequest, r.KernelInfoReply)
KERNEL_INTERRUPT = _own("kernel", "kernel_interrupt", m.KernelInterruptRequest, r.KernelInterruptReply)
KERNEL_RESTART = _own("kernel", "kernel_restart", m.KernelRestartRequest, r.KernelRestartReply)
KERNEL_SHUTDOWN = _own("kernel", "kernel_shutdown", m.KernelShutdownRequest, r.KernelShutdownReply)
KERNEL_LEASE = _own("kernel", "kernel_lease", m.KernelLeaseRequest, r.KernelLeaseReply)
# The user's own number of spare kernels per environment, kept by their kernel worker (ssd.kernels.spares).
SPARES = _own("kernel", "spares", m.SparesRequest, r.SparesReply)
# Diagnostic round trip through a worker; runs only when [workers] diag = true.
ECHO = _worker("diag", "echo", m.EchoRequest, r.EchoReply)


def _table(*types: MessageType[Any, Any]) -> dict[str, MessageType[Any, Any]]:
    table = {t.msg_type: t for t in types}
    if len(table) != len(types):
        raise ValueError("a message type is registered twice")
    return table


MESSAGES: dict[str, MessageType[Any, Any]] = _table(
    PING,
    SERVER_INFO,
    LOGIN,
    LOGOUT,
    WHOAMI,
    KEY_ADD,
    KEY_REMOVE,
    ACCOUNT_CHECK,
    ENV_LIST,
    ENV_INFO,
    ENV_CREATE,
    ENV_INSTALL,
    ENV_REMOVE,
    ENV_CANCEL,
    KERNEL_START,
    KERNEL_LIST,
    KERNEL_INFO,
    KERNEL_INTERRUPT,
    KERNEL_RESTART,
    KERNEL_SHUTDOWN,
    KERNEL_LEASE,
    SPARES,
    ECHO,
)


def served_by(server: str) -> frozenset[str]:
    """The request types *server* (``broker`` or a worker service) answers."""
    return frozenset(t.msg_type for t in MESSAGES.values() if t.server == server)


def client_types() -> dict[str, MessageType[Any, Any]]:
    """The types a client may send (every type but the broker's internal ones)."""
    return {name: t for name, t in MESSAGES.items() if t.auth is not Auth.INTERNAL}


def reply_struct(msg_type: str) -> type[r.Reply]:
    """The reply struct of a request type (KeyError for an unknown type)."""
    return MESSAGES[msg_type].reply

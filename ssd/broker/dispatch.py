"""The dispatch table: every request type the broker accepts, who serves it, and
what authorization it needs.

There is no dispatch by attribute name: a message type that is not a key of
``ROUTES`` is answered ``unknown_message_type``. A test walks this table.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ssd.messages import (
    EchoRequest,
    EnvCancelRequest,
    EnvCreateRequest,
    EnvInfoRequest,
    EnvInstallRequest,
    EnvListRequest,
    EnvRemoveRequest,
    KernelInfoRequest,
    KernelInterruptRequest,
    KernelLeaseRequest,
    KernelListRequest,
    KernelRestartRequest,
    KernelShutdownRequest,
    KernelStartRequest,
    KeyAddRequest,
    KeyRemoveRequest,
    LoginRequest,
    LogoutRequest,
    PingRequest,
    RequestContent,
    ServerInfoRequest,
    WhoamiRequest,
)

__all__ = ["PUBLIC_TYPES", "ROUTES", "Auth", "Route"]


class Auth(enum.Enum):
    """What a client key must have to send a request type."""

    PUBLIC = "public"  # any CURVE client, before login
    USER = "user"  # a key bound to a Unix user (login or authorized key)


@dataclass(frozen=True)
class Route:
    """Where one request type goes: an in-broker handler or a worker service."""

    msg_type: str
    content: type[RequestContent]
    auth: Auth
    handler: str | None = None  # name in ssd.broker.handlers.HANDLERS
    service: str | None = None  # worker service name
    per_user: bool = False  # served by the bound user's own worker, running as that user

    def __post_init__(self) -> None:
        if (self.handler is None) == (self.service is None):
            raise ValueError(f"{self.msg_type}: a route has exactly one of handler or service")


def _table(*routes: Route) -> dict[str, Route]:
    return {route.msg_type: route for route in routes}


ROUTES: dict[str, Route] = _table(
    Route("ping_request", PingRequest, Auth.PUBLIC, handler="ping"),
    Route("server_info_request", ServerInfoRequest, Auth.PUBLIC, handler="server_info"),
    # The broker throttles logins before they reach the auth pool (limiter.py).
    Route("login_request", LoginRequest, Auth.PUBLIC, service="auth"),
    Route("logout_request", LogoutRequest, Auth.USER, handler="logout"),
    Route("whoami_request", WhoamiRequest, Auth.USER, handler="whoami"),
    Route("key_add_request", KeyAddRequest, Auth.USER, service="auth"),
    Route("key_remove_request", KeyRemoveRequest, Auth.USER, service="auth"),
    # The user's own env worker, running as the user (started on first use).
    Route("env_list_request", EnvListRequest, Auth.USER, service="env", per_user=True),
    Route("env_info_request", EnvInfoRequest, Auth.USER, service="env", per_user=True),
    Route("env_create_request", EnvCreateRequest, Auth.USER, service="env", per_user=True),
    Route("env_install_request", EnvInstallRequest, Auth.USER, service="env", per_user=True),
    Route("env_remove_request", EnvRemoveRequest, Auth.USER, service="env", per_user=True),
    Route("env_cancel_request", EnvCancelRequest, Auth.USER, service="env", per_user=True),
    # The user's own kernel worker, running as the user; kernel_start also counts against the host limit.
    Route("kernel_start_request", KernelStartRequest, Auth.USER, service="kernel", per_user=True),
    Route("kernel_list_request", KernelListRequest, Auth.USER, service="kernel", per_user=True),
    Route("kernel_info_request", KernelInfoRequest, Auth.USER, service="kernel", per_user=True),
    Route("kernel_interrupt_request", KernelInterruptRequest, Auth.USER, service="kernel", per_user=True),
    Route("kernel_restart_request", KernelRestartRequest, Auth.USER, service="kernel", per_user=True),
    Route("kernel_shutdown_request", KernelShutdownRequest, Auth.USER, service="kernel", per_user=True),
    Route("kernel_lease_request", KernelLeaseRequest, Auth.USER, service="kernel", per_user=True),
    # Diagnostic round trip through a worker; runs only when [workers] diag = true.
    Route("echo_request", EchoRequest, Auth.USER, service="diag"),
)

# The only request types a key that is not bound to a user may send.
PUBLIC_TYPES = frozenset(r.msg_type for r in ROUTES.values() if r.auth is Auth.PUBLIC)

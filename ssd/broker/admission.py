"""Checks a request passes in the broker before it reaches a user's own worker.

A per-user worker is controlled by its user (DESIGN §1, rule 1): a limit that
protects other users, or a rule the host's administrator set for a user, is
enforced here, where the user cannot reach. The worker may check the same
again (for an earlier, friendlier answer); that check is a convenience only.

- ``kernels.max_per_user`` and ``kernels.max_per_host``: the broker's book of
  kernel records plus the starts in flight (``KernelBook``, ``Registry``);
- ``kernels.env_allow``: the variable names of a ``kernel_start_request``;
- ``envs.administration`` and ``envs.admin_deny_groups``: the user's groups
  as root reads them from the account database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ssd import protocol
from ssd.broker.kernels import KernelBook
from ssd.broker.registry import Registry
from ssd.config import Config
from ssd.errors import ErrorCode, SSDError
from ssd.kernels.launch import check_env_vars
from ssd.messages import KernelStartRequest, RequestContent
from ssd.users import Account, lookup

__all__ = ["ADMIN_REQUESTS", "Admission", "Check"]

Check = Callable[[str | None, RequestContent], dict[str, Any] | None]
ADMIN_REQUESTS = ("env_create_request", "env_install_request", "env_remove_request")
KERNEL_START = "kernel_start_request"


class Admission:
    """The broker's checks by request type: (user, parsed-and-valid content) -> an error reply, or None."""

    def __init__(
        self,
        config: Config,
        kernels: KernelBook,
        registry: Registry,
        account: Callable[[str], Account | None] = lookup,
    ) -> None:
        self.config = config
        self.kernels = kernels
        self.registry = registry
        self.account = account

    def checks(self) -> dict[str, Check]:
        """The table the control handler consults (ControlHandler.admission)."""
        table: dict[str, Check] = {KERNEL_START: self.kernel_start}
        table.update(dict.fromkeys(ADMIN_REQUESTS, self.env_admin))
        return table

    def kernel_start(self, user: str | None, content: RequestContent) -> dict[str, Any] | None:
        """Variables on the allow-list, then the user's and the host's kernel limits."""
        assert isinstance(content, KernelStartRequest)
        limits = self.config.kernels
        try:
            check_env_vars(dict(content.env_vars), limits.env_allow)
        except SSDError as exc:
            return protocol.error_content(exc.code, exc.message)
        if user is not None:
            starting = self.registry.in_flight(KERNEL_START, user)
            refused = self.kernels.admit_user_start(user, limits.max_per_user, starting)
            if refused is not None:
                return refused
        return self.kernels.admit_start(limits.max_per_host, self.registry.in_flight(KERNEL_START))

    def env_admin(self, user: str | None, content: RequestContent) -> dict[str, Any] | None:
        """Administration off for the host, or for a group the user is in: listing only."""
        envs = self.config.envs
        account = self.account(user) if user is not None else None
        denied = set(envs.admin_deny_groups)
        if envs.administration and account is not None and not account.groups & denied:
            return None
        return protocol.error_content(
            ErrorCode.NOT_ALLOWED, "environment administration is turned off for you on this host"
        )

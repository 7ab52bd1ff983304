"""Checks a request passes in the broker before it reaches a user's own worker.

A per-user worker is controlled by its user (DESIGN §1, rule 1): a limit that
protects other users, or a rule the host's administrator set for a user, is
enforced here, where the user cannot reach. The worker may check the same
again (for an earlier, friendlier answer); that check is a convenience only.

- ``kernel_start_request``: the variable allow-list and the kernel limits,
  the kernel service's (``KernelService.admit_start``);
- ``envs.administration`` and ``envs.admin_deny_groups``: the user's groups
  as root reads them from the account database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ssd import contract, protocol
from ssd.broker.kernel_service import KERNEL_START, KernelService
from ssd.config import EnvsConfig
from ssd.errors import ErrorCode
from ssd.messages import RequestContent
from ssd.users import Account, lookup

__all__ = ["ADMIN_REQUESTS", "Admission", "Check"]

Check = Callable[[str | None, RequestContent], dict[str, Any] | None]
ADMIN_REQUESTS = tuple(m.msg_type for m in (contract.ENV_CREATE, contract.ENV_INSTALL, contract.ENV_REMOVE))


class Admission:
    """The broker's checks by request type: (user, parsed-and-valid content) -> an error reply, or None."""

    def __init__(
        self, envs: EnvsConfig, kernels: KernelService, account: Callable[[str], Account | None] = lookup
    ) -> None:
        self.envs = envs
        self.kernels = kernels
        self.account = account

    def checks(self) -> dict[str, Check]:
        """The table the control handler consults (ControlHandler's *admission*)."""
        table: dict[str, Check] = {KERNEL_START: self.kernels.admit_start}
        table.update(dict.fromkeys(ADMIN_REQUESTS, self.env_admin))
        return table

    def env_admin(self, user: str | None, content: RequestContent) -> dict[str, Any] | None:
        """Administration off for the host, or for a group the user is in: listing only."""
        account = self.account(user) if user is not None else None
        denied = set(self.envs.admin_deny_groups)
        if self.envs.administration and account is not None and not account.groups & denied:
            return None
        return protocol.error_content(
            ErrorCode.NOT_ALLOWED, "environment administration is turned off for you on this host"
        )

"""Which workers run, and when they start: the auth pool with the broker, a user's own on first request.

The auth pool (and the diag worker, when configured) starts with the broker.
A per-user worker (``env``, ``kernel``) runs as its user and starts on that
user's first request, once the auth pool said the account may still log in
(``ssd.broker.accounts``); a user with recorded kernels gets a kernel worker
at once, to watch them again.
"""

from __future__ import annotations

import functools
import logging
import os
import pwd
from collections.abc import Callable
from typing import Any

import msgspec

from ssd.broker.accounts import AccountChecks
from ssd.broker.backend import WorkerRouter
from ssd.broker.registry import Pending
from ssd.broker.supervisor import Supervisor, WorkerSpec
from ssd.config import Config
from ssd.kernels.transport import channel_plan
from ssd.users import lookup

__all__ = ["USER_SERVICE_OPTIONS", "WorkerStarter", "pool_specs", "services", "worker_address_space"]

log = logging.getLogger(__name__)

# Address space a kernel worker needs for itself (Python, pyzmq, its threads, with MALLOC_ARENA_MAX=2).
WORKER_MIN_MB = 512

# Per-user services (one worker per user, running as that user, started on the
# user's first request) and the options each worker gets from the config.
USER_SERVICE_OPTIONS: dict[str, Callable[[Config], dict[str, Any]]] = {
    "env": lambda config: {"envs": msgspec.to_builtins(config.envs)},
    "kernel": lambda config: {
        "envs": msgspec.to_builtins(config.envs),
        "kernels": msgspec.to_builtins(config.kernels),
        "slurm": msgspec.to_builtins(config.slurm),
        **channel_plan(config.kernels.transport, config.kernels.ip, config.server.bind)._asdict(),
    },
}


def worker_address_space(memory_limit_mb: int) -> int:
    """The hard RLIMIT_AS (bytes) of a kernel worker, which its kernels inherit: kernels.memory_limit, but
    never below what the worker itself needs (WORKER_MIN_MB); 0 = none. A smaller memory_limit is applied to
    each kernel by the worker only: advisory against its own user (docs/kernels.md, Limits)."""
    return max(memory_limit_mb, WORKER_MIN_MB) << 20 if memory_limit_mb else 0


def pool_specs(config: Config, admin_keys_dir: str, user_mode: bool) -> list[WorkerSpec]:
    """The workers that start with the broker: the auth pool, and diag when configured."""
    auth = config.auth
    options = {
        "pam_service": auth.pam_service,
        "authorized_keys": auth.authorized_keys,
        "admin_keys_dir": admin_keys_dir,
        "min_uid": auth.min_uid,
        "allow_root": auth.allow_root,
        "allow_users": auth.allow_users,
        "deny_users": auth.deny_users,
        "allow_groups": auth.allow_groups,
        "deny_groups": auth.deny_groups,
        "permit_empty_passwords": auth.permit_empty_passwords,
        "require_listed_shell": auth.require_listed_shell,
        # User mode: nobody but the daemon's own user may log in.
        "only_user": pwd.getpwuid(os.geteuid()).pw_name if user_mode else None,
    }
    specs = [WorkerSpec(f"auth-{n}", "auth", options) for n in range(1, auth.pool_size + 1)]
    if config.workers.diag:
        specs.append(WorkerSpec("diag", "diag"))
    return specs


def services(specs: list[WorkerSpec]) -> set[str]:
    """Every service this broker serves: the pool's and the per-user ones."""
    return {spec.service for spec in specs} | set(USER_SERVICE_OPTIONS)


class WorkerStarter:
    """Starts the pool, and each user's own worker when a request needs it and the account passed."""

    def __init__(self, config: Config, supervisor: Supervisor, router: WorkerRouter, accounts: AccountChecks) -> None:
        self.config = config
        self.supervisor = supervisor
        self.router = router
        self.accounts = accounts

    def start_pool(self, specs: list[WorkerSpec], kernel_users: list[str]) -> None:
        """Start the pool, and the kernel workers of *kernel_users* to watch their kernels again."""
        for spec in specs:
            self.supervisor.start(spec)
        # No session asks for these: the sessions' accounts are checked at once by AccountChecks.
        for user in kernel_users:
            self.start_user_worker("kernel", user)

    def submit(self, pending: Pending) -> None:
        """Hand *pending* to the backend; start its user's worker when it had to wait for one."""
        if self.router.submit(pending) and pending.route_user is not None:
            self.spawn(pending.service, pending.route_user)

    def spawn(self, service: str, user: str) -> None:
        """For a session's request: start *user*'s own worker once the auth pool says the account is enabled."""
        name = f"{service}:{user}"
        if self.supervisor.running(name):
            self.supervisor.revive(name)
            return
        self.accounts.require(user, functools.partial(self.start_user_worker, service, user))

    def start_user_worker(self, service: str, user: str) -> None:
        """Start *user*'s own worker for *service* (as that user) unless it runs; revive one being retired."""
        name = f"{service}:{user}"
        if self.supervisor.running(name):
            self.supervisor.revive(name)
            return
        account = lookup(user)
        if account is None:
            log.error("cannot start the %s worker of %s: no such account", service, user)
            return
        options = USER_SERVICE_OPTIONS[service](self.config)
        limit = worker_address_space(self.config.kernels.memory_limit) if service == "kernel" else 0
        self.supervisor.start(WorkerSpec(name, service, options, user=account, address_space=limit))

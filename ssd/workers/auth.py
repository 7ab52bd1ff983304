"""The auth service: password logins through PAM, authorized-key logins, copy-id.

Runs as a small pool of processes (root in system mode: PAM must read the
shadow database). Each process serves one request at a time, so a PAM failure
delay blocks only that process; the broker's limiter keeps any one user name
from holding more than one of them. Passwords are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import pamela

from ssd import protocol
from ssd.errors import SSDError
from ssd.isolation import python_module
from ssd.messages import KeyAddRequest, LoginRequest
from ssd.users import Account, AccountPolicy, LoginRefused, lookup, normalize_username
from ssd.workers import keyfile, wire
from ssd.workers.base import Worker
from ssd.workers.privileges import as_user

__all__ = ["AuthWorker"]

log = logging.getLogger(__name__)

# Debian's /etc/pam.d/login has pam_faildelay delay=3000000 (3 s, PAM adds +-25%).
REFUSAL_DELAY = 3.0
_FAILED_TEXT = "login failed: wrong user name or password, or this account may not log in here"


class AuthWorker(Worker):
    """Serves ``login_request`` and ``key_add_request``."""

    service = "auth"
    capacity = 1  # one PAM conversation per process; the pool gives parallelism

    def __init__(self, credentials: wire.Credentials) -> None:
        super().__init__(credentials)
        options = credentials.options
        self.pam_service = str(options.get("pam_service", "login"))
        self.keys_file = str(options.get("authorized_keys", ".config/ssd/authorized_keys"))
        self.admin_keys_dir = Path(str(options.get("admin_keys_dir", "/etc/ssd/authorized_keys.d")))
        self.policy = AccountPolicy(
            min_uid=int(options.get("min_uid", 1000)),
            allow_root=bool(options.get("allow_root", False)),
            allow_users=frozenset(options.get("allow_users", [])),
            deny_users=frozenset(options.get("deny_users", [])),
            allow_groups=frozenset(options.get("allow_groups", [])),
            deny_groups=frozenset(options.get("deny_groups", [])),
            only_user=options.get("only_user"),
        )

    def key_files(self, account: Account) -> list[tuple[Path, int, Path]]:
        """The user's own file (checked up from the home) and the administrator's file."""
        home = Path(account.home)
        admin = self.admin_keys_dir / account.name
        return [(home / self.keys_file, account.uid, home), (admin, os.geteuid(), self.admin_keys_dir)]


async def login(worker: AuthWorker, content: LoginRequest, request: wire.Request) -> dict[str, Any]:
    """Check a password with PAM (authenticate + account), or the client's key against authorized keys."""
    try:
        name = normalize_username(content.username)
    except ValueError as exc:
        raise SSDError(f"invalid user name: {exc}", code="bad_request") from None
    account = lookup(name)
    if content.password is None:
        method = "key"
        ok = account is not None and keyfile.authorized(request.client_key.encode(), worker.key_files(account))
        if not ok:
            raise SSDError(
                f"this client key is not authorized for {name}; log in with a password and run: ssd-ctl copy-id HOST",
                code=protocol.AUTH_FAILED,
            )
    else:
        method = "password"
        # Unknown and refused users go through PAM too, so that every failure looks alike and takes
        # as long (a refusal after a right password is delayed below).
        ok = await asyncio.to_thread(_pam_login, name, content.password, worker.pam_service)
    if account is not None and ok:
        try:
            worker.policy.check(account)
        except LoginRefused as exc:
            log.warning("login of %s refused: %s", name, exc)
            ok = False
            if method == "password":
                # A right password for a refused account must not answer faster
                # than a wrong one, which PAM (pam_faildelay) delays.
                await asyncio.sleep(REFUSAL_DELAY * random.uniform(0.75, 1.25))  # noqa: S311 (jitter, not a secret)
    if not ok or account is None:
        log.info("failed %s login for %s", method, name)
        raise SSDError(_FAILED_TEXT, code=protocol.AUTH_FAILED)
    log.info("%s logged in with a %s", name, method)
    return {"status": "ok", "user": account.name, "uid": account.uid, "method": method}


def _pam_login(name: str, password: str, service: str) -> bool:
    try:
        # resetcred=0: no pam_setcred, which (pam_group) would change this process's groups.
        pamela.authenticate(name, password, service=service, resetcred=0, check=True)
    except pamela.PAMError as exc:
        log.debug("PAM refused %s: %s", name, exc)
        return False
    return True


async def key_add(worker: AuthWorker, content: KeyAddRequest, request: wire.Request) -> dict[str, Any]:
    """copy-id: append the connection's key to its user's authorized keys, written as that user."""
    if request.user is None:
        raise SSDError("copy-id needs a login first", code="not_authorized")
    account = lookup(request.user)
    if account is None:
        raise SSDError(f"user {request.user} no longer exists", code="not_found")
    path = Path(account.home) / worker.keys_file
    argv = python_module("ssd.workers.keyfile", "add", str(path), request.client_key, content.comment)
    result = await asyncio.to_thread(_run_as, argv, account)
    if result.returncode not in (0, 3):
        raise SSDError(result.stderr.strip() or "could not write the authorized keys file", code="key_add_failed")
    return {"status": "ok", "user": account.name, "file": str(path), "added": result.returncode == 0}


def _run_as(argv: list[str], account: Account) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False, **as_user(account))


AuthWorker.routes = {"login_request": (LoginRequest, login), "key_add_request": (KeyAddRequest, key_add)}

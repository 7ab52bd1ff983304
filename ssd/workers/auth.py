"""The auth service: password logins through PAM, authorized-key logins, copy-id and revoke-id.

Runs as a small pool of processes (root in system mode: PAM must read the
shadow database). Each process serves one request at a time, so a PAM failure
delay blocks only that process; the broker's limiter keeps one user name from
one address to one of them, and one address from holding them all. Key logins
and the broker's periodic re-checks run PAM's account check (and see a locked
or expired account, as sshd does: ssd.workers.account). Passwords are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import subprocess
from pathlib import Path
from typing import Literal

import pamela

from ssd import contract
from ssd.errors import ErrorCode, SSDError
from ssd.isolation import python_module
from ssd.keys import is_valid_public_key
from ssd.messages import AccountCheckRequest, KeyAddRequest, KeyRemoveRequest, LoginRequest
from ssd.replies import AccountCheckReply, KeyAddReply, KeyRemoveReply, LoginReply
from ssd.users import EMPTY_PASSWORD_REFUSED, Account, AccountPolicy, LoginRefused, lookup, normalize_username
from ssd.workers import keyfile, wire
from ssd.workers.account import account_refusal
from ssd.workers.base import Worker
from ssd.workers.privileges import as_user

__all__ = ["AuthWorker"]

log = logging.getLogger(__name__)

# Debian's /etc/pam.d/login has pam_faildelay delay=3000000 (3 s, PAM adds +-25%).
REFUSAL_DELAY = 3.0
_FAILED_TEXT = "login failed: wrong user name or password, or this account may not log in here"


class AuthWorker(Worker):
    """Serves ``login_request``, ``key_add_request`` and ``key_remove_request``."""

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
        self.permit_empty_passwords = bool(options.get("permit_empty_passwords", False))
        self.require_listed_shell = bool(options.get("require_listed_shell", True))

    def account_refusal(self, account: Account) -> str | None:
        """Why *account* is disabled now (locked, expired, no login shell), or None; blocks (PAM)."""
        return account_refusal(account, self.pam_service, require_listed_shell=self.require_listed_shell)

    def key_files(self, account: Account) -> list[tuple[Path, int, Path]]:
        """The user's own file (checked up from the home) and the administrator's file."""
        home = Path(account.home)
        admin = self.admin_keys_dir / account.name
        return [(home / self.keys_file, account.uid, home), (admin, os.geteuid(), self.admin_keys_dir)]


async def login(worker: AuthWorker, content: LoginRequest, request: wire.Request) -> LoginReply:
    """Check a password with PAM (authenticate + account), or the client's key and the account's state."""
    try:
        name = normalize_username(content.username)
    except ValueError as exc:
        raise SSDError(f"invalid user name: {exc}", code=ErrorCode.BAD_REQUEST) from None
    account = lookup(name)
    method: Literal["key", "password"]
    if content.password is None:
        method, ok = "key", _check_key(worker, account, request.client_key, name)
    elif content.password == "" and not worker.permit_empty_passwords:
        raise SSDError(EMPTY_PASSWORD_REFUSED, code=ErrorCode.AUTH_FAILED)  # the broker refuses it first
    else:
        method = "password"
        # Unknown and refused users go through PAM too, so that every failure looks alike and takes
        # as long (a refusal after a right password is delayed below).
        ok = await asyncio.to_thread(_pam_login, name, content.password, worker.pam_service)
    if account is not None and ok:
        ok = await _admitted(worker, account, method)
    if not ok or account is None:
        log.info("failed %s login for %s", method, name)
        raise SSDError(_FAILED_TEXT, code=ErrorCode.AUTH_FAILED)
    log.info("%s logged in with a %s", name, method)
    return LoginReply(user=account.name, uid=account.uid, method=method)


def _check_key(worker: AuthWorker, account: Account | None, client_key: str, name: str) -> bool:
    """True when *client_key* is authorized for the account; raise (telling how to authorize it) if not."""
    if account is None or not keyfile.authorized(client_key.encode(), worker.key_files(account)):
        raise SSDError(
            f"this client key is not authorized for {name}; log in with a password and run: ssd-ctl copy-id HOST",
            code=ErrorCode.AUTH_FAILED,
        )
    return True


async def _admitted(worker: AuthWorker, account: Account, method: str) -> bool:
    """Apply the account policy and the account's state after a right password or key.

    A key holder is told why a disabled account is refused (it proved it may act for the account); a
    password guesser learns nothing, and waits as long as after a wrong password (pam_faildelay).
    """
    if _policy_allows(worker, account):
        reason = await asyncio.to_thread(worker.account_refusal, account)
        if reason is None:
            return True
        log.warning("login of %s refused: %s", account.name, reason)
        if method == "key":
            raise SSDError(f"{account.name} may not log in: {reason}", code=ErrorCode.ACCOUNT_DISABLED)
    if method == "password":
        await asyncio.sleep(REFUSAL_DELAY * random.uniform(0.75, 1.25))  # noqa: S311 (jitter, not a secret)
    return False


def _policy_allows(worker: AuthWorker, account: Account) -> bool:
    try:
        worker.policy.check(account)
    except LoginRefused as exc:
        log.warning("login of %s refused: %s", account.name, exc)
        return False
    return True


async def account_check(worker: AuthWorker, content: AccountCheckRequest, request: wire.Request) -> AccountCheckReply:
    """The broker asks whether the request's user may still log in (at worker start, and periodically)."""
    if request.client_key:
        raise SSDError("account checks come from the broker only", code=ErrorCode.NOT_AUTHORIZED)
    account = lookup(request.user) if request.user else None
    if account is None:
        raise SSDError(f"the account {request.user} no longer exists", code=ErrorCode.ACCOUNT_DISABLED)
    try:
        worker.policy.check(account)
    except LoginRefused as exc:
        raise SSDError(f"the account may no longer log in here: {exc}", code=ErrorCode.ACCOUNT_DISABLED) from None
    reason = await asyncio.to_thread(worker.account_refusal, account)
    if reason is not None:
        raise SSDError(f"{account.name} may no longer log in: {reason}", code=ErrorCode.ACCOUNT_DISABLED)
    return AccountCheckReply(user=account.name)


def _pam_login(name: str, password: str, service: str) -> bool:
    try:
        # resetcred=0: no pam_setcred, which (pam_group) would change this process's groups.
        pamela.authenticate(name, password, service=service, resetcred=0, check=True)
    except pamela.PAMError as exc:
        log.debug("PAM refused %s: %s", name, exc)
        return False
    return True


async def key_add(worker: AuthWorker, content: KeyAddRequest, request: wire.Request) -> KeyAddReply:
    """copy-id: append the connection's key to its user's authorized keys, written as that user."""
    if request.user is None:
        raise SSDError("copy-id needs a login first", code=ErrorCode.NOT_AUTHORIZED)
    account = lookup(request.user)
    if account is None:
        raise SSDError(f"user {request.user} no longer exists", code=ErrorCode.NOT_FOUND)
    path = Path(account.home) / worker.keys_file
    argv = python_module("ssd.workers.keyfile", "add", str(path), request.client_key, content.comment)
    result = await asyncio.to_thread(_run_as, argv, account)
    if result.returncode not in (0, 3):
        raise SSDError(
            result.stderr.strip() or "could not write the authorized keys file", code=ErrorCode.KEY_ADD_FAILED
        )
    return KeyAddReply(user=account.name, file=str(path), added=result.returncode == 0)


async def key_remove(worker: AuthWorker, content: KeyRemoveRequest, request: wire.Request) -> KeyRemoveReply:
    """revoke-id: take a key (default: the connection's) or all keys out of the user's own file, as that user.

    The reply says whether the key is still authorized afterwards (the administrator's file may list it,
    which only root changes); ``dry_run`` only answers that, for ``ssd-ctl logout``.
    """
    if request.user is None:
        raise SSDError("revoke-id needs a login first", code=ErrorCode.NOT_AUTHORIZED)
    account = lookup(request.user)
    if account is None:
        raise SSDError(f"user {request.user} no longer exists", code=ErrorCode.NOT_FOUND)
    key = (content.key or request.client_key).encode()
    if not content.all and not is_valid_public_key(key):
        raise SSDError("key: not a CURVE public key (40 characters of Z85)", code=ErrorCode.BAD_REQUEST)
    own, admin = worker.key_files(account)
    removed = 0
    if not content.dry_run:
        path = Path(account.home) / worker.keys_file
        which = ("remove-all", str(path)) if content.all else ("remove", str(path), key.decode())
        result = await asyncio.to_thread(_run_as, python_module("ssd.workers.keyfile", *which), account)
        if result.returncode != 0:
            raise SSDError(
                result.stderr.strip() or "could not change the authorized keys file", code=ErrorCode.KEY_REMOVE_FAILED
            )
        removed = int(result.stdout.strip() or 0)
    return KeyRemoveReply(
        user=account.name,
        file=str(own[0]),
        removed=removed,
        authorized=keyfile.authorized(key, [own, admin]),  # this key, after the change
        admin_file=str(admin[0]) if keyfile.authorized(key, [admin]) else None,
    )


def _run_as(argv: list[str], account: Account) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False, **as_user(account))


AuthWorker.handlers = {
    contract.LOGIN.msg_type: login,
    contract.KEY_ADD.msg_type: key_add,
    contract.KEY_REMOVE.msg_type: key_remove,
    contract.ACCOUNT_CHECK.msg_type: account_check,
}

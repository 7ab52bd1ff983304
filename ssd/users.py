"""Unix user names and who may log in: validation, normalization, account policy.

Pure policy on top of the account database (``pwd``/``grp``); the auth worker
applies it after PAM (or the key check) succeeded, so that a refused account
gets the same answer as a wrong password.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import unicodedata
from dataclasses import dataclass

__all__ = ["EMPTY_PASSWORD_REFUSED", "Account", "AccountPolicy", "LoginRefused", "lookup", "normalize_username"]

# The same answer for every name: "" is no secret, and the refusal says nothing about the account.
EMPTY_PASSWORD_REFUSED = "empty passwords are refused on this server (auth.permit_empty_passwords = false)"  # noqa: S105

# POSIX portable names plus the trailing $ of machine accounts, as useradd accepts.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?")


class LoginRefused(Exception):
    """The account may not log in here; the message says why (for the log, not the client)."""


def normalize_username(raw: str) -> str:
    """Return the NFKC form of *raw* if it is a valid Unix user name, else raise ValueError."""
    name = unicodedata.normalize("NFKC", raw)
    if not name:
        raise ValueError("user name is empty")
    if len(name) > 32:
        raise ValueError("user name is longer than 32 characters")
    if not _NAME.fullmatch(name):
        raise ValueError("user name may contain only letters, digits, '_', '.', '-' and must not start with '-'")
    return name


@dataclass(frozen=True)
class Account:
    """The facts about a user that authorization needs."""

    name: str
    uid: int
    gid: int
    home: str
    groups: frozenset[str]
    shell: str = "/bin/sh"


def lookup(name: str) -> Account | None:
    """Return the account named *name*, or None if there is none."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    gids = os.getgrouplist(entry.pw_name, entry.pw_gid)
    groups = set()
    for gid in gids:
        try:
            groups.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return Account(
        entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, frozenset(groups), entry.pw_shell or "/bin/sh"
    )


@dataclass(frozen=True)
class AccountPolicy:
    """Which accounts may log in: only-user (user mode), system accounts, allow and deny lists."""

    min_uid: int = 1000
    allow_root: bool = False
    allow_users: frozenset[str] = frozenset()
    deny_users: frozenset[str] = frozenset()
    allow_groups: frozenset[str] = frozenset()
    deny_groups: frozenset[str] = frozenset()
    only_user: str | None = None  # user mode: the daemon's own user and nobody else

    def check(self, account: Account) -> None:
        """Raise LoginRefused naming the rule that refuses *account*."""
        if self.only_user is not None:
            if account.name != self.only_user:
                raise LoginRefused(f"user mode: only {self.only_user} may log in, not {account.name}")
            return
        if account.uid == 0 and not self.allow_root:
            raise LoginRefused("root may not log in (auth.allow_root = false)")
        if 0 < account.uid < self.min_uid:
            raise LoginRefused(f"{account.name} is a system account (uid {account.uid} < auth.min_uid)")
        if account.name in self.deny_users or account.groups & self.deny_groups:
            raise LoginRefused(f"{account.name} is denied by auth.deny_users or auth.deny_groups")
        allow_listed = self.allow_users or self.allow_groups
        if allow_listed and account.name not in self.allow_users and not account.groups & self.allow_groups:
            raise LoginRefused(f"{account.name} is not in auth.allow_users or auth.allow_groups")

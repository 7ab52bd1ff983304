"""Is an account enabled? PAM's account check, a locked password, a login shell.

A key login authenticates without PAM, so PAM's account management (expiry,
pam_access, pam_time, ...) runs here on its own, as sshd runs it after a key.
pam_unix's account module does not look at a locked password (``usermod -L``,
a hash starting with ``!``), so that is read from the shadow database as sshd
does without PAM: ``usermod -L`` means "no login" here, by key too. Reading
shadow needs root; a daemon in user mode cannot, and there the only account
that may log in is the one that runs the daemon. Called by the auth worker,
in a thread (PAM blocks).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pamela

from ssd.users import Account

__all__ = ["account_refusal", "listed_shells", "shadow_expired", "shadow_locked"]

log = logging.getLogger(__name__)

SHELLS = Path("/etc/shells")
# What glibc's getusershell() assumes when /etc/shells is missing.
_DEFAULT_SHELLS = frozenset({"/bin/sh", "/bin/csh"})


def account_refusal(account: Account, service: str, *, require_listed_shell: bool) -> str | None:
    """Why *account* may not log in now (for the account's owner), or None when it may."""
    shadow = _shadow_entry(account.name)
    if shadow is not None and shadow_locked(shadow.hashed):
        return "the account is locked (usermod -L / passwd -l)"
    if shadow is not None and shadow_expired(shadow.expire, time.time()):
        return f"the account expired on {_day(shadow.expire)} (chage -E / usermod -e)"
    status = _pam_account_status(account.name, service)
    if status is not None:
        return f"PAM's account check refuses it ({status})"
    if require_listed_shell and account.shell not in listed_shells():
        return f"its login shell {account.shell} is not listed in {SHELLS} (auth.require_listed_shell)"
    return None


def shadow_locked(hashed: str) -> bool:
    """Whether a shadow password field marks a locked account, as sshd reads it ('!' on Linux, *LK*)."""
    return hashed.startswith(("!", "*LK*"))


def shadow_expired(expire_day: int, now: float) -> bool:
    """Whether a shadow expiry (days since 1970, -1 = never) has come, as sshd and pam_unix read it."""
    return expire_day >= 0 and now // 86400 >= expire_day


def _day(days: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(days * 86400))


def listed_shells(path: Path = SHELLS) -> frozenset[str]:
    """The valid login shells (one absolute path a line, # comments), as getusershell() reads them."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return _DEFAULT_SHELLS
    return frozenset(line.strip() for line in text.splitlines() if line.strip().startswith("/"))


def _pam_account_status(name: str, service: str) -> str | None:
    """pam_acct_mgmt without authentication (pamela.check_account with a silent conversation)."""
    silent = pamela.new_simple_password_conv((), "utf-8")  # no prompt is ever answered
    try:
        handle = pamela.pam_start(service, name, conv_func=silent)
        pamela.pam_end(handle, pamela.PAM_ACCT_MGMT(handle, 0))
    except pamela.PAMError as exc:
        return str(exc.message or exc)
    return None


class _Spwd(ctypes.Structure):
    _fields_ = [
        ("sp_namp", ctypes.c_char_p),
        ("sp_pwdp", ctypes.c_char_p),
        ("sp_lstchg", ctypes.c_long),
        ("sp_min", ctypes.c_long),
        ("sp_max", ctypes.c_long),
        ("sp_warn", ctypes.c_long),
        ("sp_inact", ctypes.c_long),
        ("sp_expire", ctypes.c_long),
        ("sp_flag", ctypes.c_ulong),
    ]


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_getspnam_r = getattr(_libc, "getspnam_r", None)
if _getspnam_r is not None:
    _getspnam_r.argtypes = [
        ctypes.c_char_p,
        ctypes.POINTER(_Spwd),
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.POINTER(ctypes.POINTER(_Spwd)),
    ]
    _getspnam_r.restype = ctypes.c_int


@dataclass(frozen=True)
class _Shadow:
    hashed: str
    expire: int  # days since 1970; -1: never


def _shadow_entry(name: str) -> _Shadow | None:
    """*name*'s shadow entry through NSS (getspnam_r); None where there is none or it is unreadable (not root)."""
    if _getspnam_r is None:
        return None
    entry, found = _Spwd(), ctypes.POINTER(_Spwd)()
    size = 1024
    while True:
        buffer = ctypes.create_string_buffer(size)
        code = _getspnam_r(name.encode(), ctypes.byref(entry), buffer, size, ctypes.byref(found))
        if code != errno.ERANGE or size >= 1 << 20:
            break
        size *= 4
    if code != 0 or not found:
        if code not in (0, errno.ENOENT):
            log.debug("shadow entry of %s not readable: %s", name, errno.errorcode.get(code, code))
        return None
    hashed = (entry.sp_pwdp or b"").decode(errors="replace")
    return _Shadow(hashed, int(entry.sp_expire))

"""Running a process as another user: groups, then gid, then uid; a clean environment.

``subprocess``'s ``user=`` alone would keep root's supplementary groups, so
``group=`` and ``extra_groups=`` are always given too.
"""

from __future__ import annotations

import os
from typing import Any

from ssd.users import Account

__all__ = ["as_user"]

_PATH = "/usr/local/bin:/usr/bin:/bin"


def as_user(account: Account) -> dict[str, Any]:
    """Keyword arguments for subprocess that run a child as *account* (no-op for ourselves)."""
    env = {
        "HOME": account.home,
        "USER": account.name,
        "LOGNAME": account.name,
        "SHELL": account.shell,
        "PATH": _PATH,
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }
    options: dict[str, Any] = {"env": env, "cwd": account.home, "umask": 0o077, "start_new_session": True}
    if os.geteuid() != account.uid:
        gids = sorted(os.getgrouplist(account.name, account.gid))
        options.update(user=account.uid, group=account.gid, extra_groups=gids)
    return options

"""ssd.workers.account: what marks an account disabled (shadow lock and expiry as sshd reads them, login shells)."""

from __future__ import annotations

from pathlib import Path

from ssd.workers.account import listed_shells, shadow_expired, shadow_locked

DAY = 86400


def test_locked_shadow_fields() -> None:
    """'!' before anything (usermod -L, useradd's no-password '!') and Solaris' *LK* lock; '*' and '' do not."""
    assert shadow_locked("!$y$j9T$salt$hash")
    assert shadow_locked("!")
    assert shadow_locked("*LK*$y$hash")
    assert not shadow_locked("$y$j9T$salt$hash")
    assert not shadow_locked("*")  # no password: keys only, as sshd sees it
    assert not shadow_locked("")


def test_shadow_expiry() -> None:
    """An expiry day (days since 1970) has come from its first second; -1 never."""
    assert shadow_expired(0, 5 * DAY)  # chage -E 0
    assert shadow_expired(1, 5 * DAY)  # usermod -e 1
    assert shadow_expired(5, 5 * DAY)
    assert not shadow_expired(6, 5 * DAY + DAY - 1)
    assert not shadow_expired(-1, 5 * DAY)


def test_listed_shells(tmp_path: Path) -> None:
    """Absolute paths, one a line, comments and blanks skipped; no file: glibc's /bin/sh and /bin/csh."""
    shells = tmp_path / "shells"
    shells.write_text("# valid login shells\n/bin/sh\n\n  /usr/bin/bash  \nnot/absolute\n")
    assert listed_shells(shells) == {"/bin/sh", "/usr/bin/bash"}
    assert listed_shells(tmp_path / "missing") == {"/bin/sh", "/bin/csh"}
    assert "/usr/sbin/nologin" not in listed_shells()

"""User names and account policy: validation, normalization, who may log in (pure, no PAM)."""

from __future__ import annotations

import os
import pwd

import pytest

from ssd.users import Account, AccountPolicy, LoginRefused, lookup, normalize_username


def account(name: str = "alice", uid: int = 1500, groups: frozenset[str] = frozenset({"alice"})) -> Account:
    """A made-up account (policy needs no real user)."""
    return Account(name, uid, uid, f"/home/{name}", groups)


@pytest.mark.parametrize("name", ["alice", "a", "_svc", "bob.smith", "x-y_z9", "machine$", "A" * 32])
def test_valid_names_pass_unchanged(name: str) -> None:
    """Portable Unix user names are accepted as they are."""
    assert normalize_username(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "../x", "-rf", "a b", "x" * 33, "x" * 40, "é", "ali\u0301ce", "root\x00", "a/b", "a:b", ".x", "$x", "a$b"],
)
def test_invalid_names_raise(name: str) -> None:
    """Empty, too long, path-like, option-like, spaced, control and non-ASCII names are refused."""
    with pytest.raises(ValueError, match="user name"):
        normalize_username(name)


def test_compatibility_forms_are_normalized() -> None:
    """Full-width letters fold to ASCII (NFKC), so a look-alike cannot pass as another spelling."""
    assert normalize_username("\uff52\uff4f\uff4f\uff54") == "root"  # full-width "root"
    assert normalize_username("bob\uff3f1") == "bob_1"


def test_lookup_real_and_missing_accounts() -> None:
    """lookup() reports uid, home and groups of a real account and None for an unknown one."""
    me = pwd.getpwuid(os.geteuid())
    found = lookup(me.pw_name)
    assert found is not None
    assert (found.uid, found.home) == (me.pw_uid, me.pw_dir)
    assert found.groups  # at least the primary group
    assert lookup("ssdt_no_such_user_here") is None


def test_default_policy_allows_ordinary_users_only() -> None:
    """Root and uids below min_uid are refused by default; an ordinary user passes."""
    policy = AccountPolicy()
    policy.check(account())
    with pytest.raises(LoginRefused, match="root"):
        policy.check(account("root", 0, frozenset({"root"})))
    with pytest.raises(LoginRefused, match="system account"):
        policy.check(account("daemon", 999))
    AccountPolicy(allow_root=True).check(account("root", 0))
    AccountPolicy(min_uid=500).check(account("old", 999))


def test_deny_lists_win() -> None:
    """A denied user or a member of a denied group is refused, even if also allowed."""
    with pytest.raises(LoginRefused, match="denied"):
        AccountPolicy(deny_users=frozenset({"alice"}), allow_users=frozenset({"alice"})).check(account())
    with pytest.raises(LoginRefused, match="denied"):
        AccountPolicy(deny_groups=frozenset({"staff"})).check(account(groups=frozenset({"alice", "staff"})))
    AccountPolicy(deny_users=frozenset({"mallory"}), deny_groups=frozenset({"staff"})).check(account())


def test_allow_lists_restrict() -> None:
    """With an allow list only listed users, or members of listed groups, may log in."""
    by_user = AccountPolicy(allow_users=frozenset({"alice"}))
    by_user.check(account())
    with pytest.raises(LoginRefused, match=r"not in auth\.allow_users"):
        by_user.check(account("bob"))
    by_group = AccountPolicy(allow_groups=frozenset({"lab"}))
    by_group.check(account("bob", groups=frozenset({"bob", "lab"})))
    with pytest.raises(LoginRefused, match="allow_groups"):
        by_group.check(account("carol", groups=frozenset({"carol"})))


def test_only_user_in_user_mode() -> None:
    """In user mode only the daemon's user may log in, whatever else the policy says."""
    policy = AccountPolicy(only_user="alice")
    policy.check(account())
    with pytest.raises(LoginRefused, match="only alice"):
        policy.check(account("bob"))
    AccountPolicy(only_user="root").check(account("root", 0))  # a user-mode daemon run by root serves root

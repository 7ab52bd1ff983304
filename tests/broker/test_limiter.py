"""LoginLimiter, the pure throttle policy: growing delays, lockout, per-name and per-address."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ssd.broker.limiter import LoginLimiter

# Large delays: retry_after is compared with what is left, never slept through.
BASE = 100.0
A, B = "10.0.0.1", "10.0.0.2"


def limiter(**options: Any) -> LoginLimiter:
    """A limiter with a 100 s base delay unless told otherwise."""
    return LoginLimiter(**{"base_delay": BASE, **options})


def fail(lim: LoginLimiter, name: str, address: str, times: int = 1) -> None:
    """Record *times* failed attempts."""
    for _ in range(times):
        lim.begin(name, address)
        lim.finish(name, address, success=False)


def test_fresh_attempt_is_immediate() -> None:
    """Nothing recorded: an attempt may start now."""
    assert limiter().retry_after("alice", A) == 0


def test_one_attempt_per_name_in_flight() -> None:
    """While alice's attempt is in PAM, another for alice waits; bob and freed slots do not."""
    lim = limiter()
    lim.begin("alice", A)
    assert lim.retry_after("alice", B) == BASE
    assert lim.retry_after("bob", A) == 0
    lim.finish("alice", A, success=False, counted=False)
    assert lim.retry_after("alice", A) == 0


def test_delay_grows_then_locks_out() -> None:
    """Each failure doubles the wait; max_failures locks the name out for `lockout`."""
    lim = limiter(max_failures=4, lockout=10_000.0)
    waits = []
    for _ in range(3):
        fail(lim, "alice", A)
        waits.append(lim.retry_after("alice", B))
    assert waits == pytest.approx([BASE, 2 * BASE, 4 * BASE], abs=1.0)
    fail(lim, "alice", A)
    assert lim.retry_after("alice", B) == pytest.approx(10_000.0, abs=1.0)


def test_other_users_from_elsewhere_are_not_affected() -> None:
    """Failures for alice never slow bob from another address."""
    lim = limiter()
    fail(lim, "alice", A, times=5)
    assert lim.retry_after("bob", B) == 0


def test_success_clears_the_name_only() -> None:
    """A valid login forgets the name's failures, not the address's."""
    lim = limiter(address_free_failures=1)
    fail(lim, "alice", A, times=2)
    lim.begin("alice", A)
    lim.finish("alice", A, success=True)
    assert lim.retry_after("alice", B) == 0
    assert lim.retry_after("carol", A) > 0


def test_address_is_slowed_after_its_free_failures() -> None:
    """A shared address is slowed only after address_free_failures failures over any names."""
    lim = limiter(address_free_failures=3)
    for n in range(3):
        fail(lim, f"user{n}", A)
    assert lim.retry_after("fresh", A) == 0
    fail(lim, "user3", A)
    assert lim.retry_after("fresh", A) == pytest.approx(BASE, abs=1.0)
    assert lim.retry_after("fresh", B) == 0


def test_address_in_flight_cap() -> None:
    """At most per_address_inflight attempts from one address are in PAM at once."""
    lim = limiter(per_address_inflight=2)
    lim.begin("u1", A)
    lim.begin("u2", A)
    assert lim.retry_after("u3", A) == BASE
    assert lim.retry_after("u3", B) == 0


def test_uncounted_finish_only_frees_the_slot() -> None:
    """counted=False (a worker error, not the user's) records no failure."""
    lim = limiter()
    for _ in range(10):
        lim.begin("alice", A)
        lim.finish("alice", A, success=False, counted=False)
    assert lim.retry_after("alice", A) == 0


def test_old_failures_are_forgotten() -> None:
    """Records older than forget_after are dropped (the lockout included)."""
    lim = limiter(forget_after=0.05, lockout=0.01, max_failures=1)
    fail(lim, "alice", A)
    assert lim.retry_after("alice", A) > 0
    time.sleep(0.1)
    assert lim.retry_after("alice", A) == 0
    assert not lim._names  # the table does not grow without bound


def test_key_logins_ignore_attempts_in_flight() -> None:
    """A key login (pam=False) costs no PAM time: it neither waits for nor occupies an in-flight slot."""
    lim = limiter(per_address_inflight=1)
    lim.begin("alice", A)
    assert lim.retry_after("alice", A, pam=False) == 0
    lim.begin("bob", A, pam=False)
    lim.finish("bob", A, success=True, pam=False)
    lim.finish("alice", A, success=False, counted=False)
    assert lim.retry_after("carol", A) == 0

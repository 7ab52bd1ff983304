"""LoginLimiter, the pure throttle policy: growing delays and lockout per (name, address) and per address."""

from __future__ import annotations

from typing import Any

import pytest
from support.clock import ManualClock

from ssd.broker.limiter import LoginLimiter, source_of

BASE = 100.0
A, B = "10.0.0.1", "10.0.0.2"


def limiter(clock: ManualClock | None = None, **options: Any) -> LoginLimiter:
    """A limiter with a 100 s base delay unless told otherwise."""
    return LoginLimiter(**{"base_delay": BASE, "clock": clock or ManualClock(), **options})


def fail(lim: LoginLimiter, name: str, address: str, times: int = 1) -> None:
    """Record *times* failed attempts."""
    for _ in range(times):
        lim.begin(name, address)
        lim.finish(name, address, success=False)


def test_fresh_attempt_is_immediate() -> None:
    """Nothing recorded: an attempt may start now."""
    assert limiter().retry_after("alice", A) == 0


def test_one_attempt_per_name_and_address_in_flight() -> None:
    """While alice's attempt from A is in PAM, another for alice from A waits; from B, bob, freed slots do not."""
    lim = limiter()
    lim.begin("alice", A)
    assert lim.retry_after("alice", A) == BASE
    assert lim.retry_after("alice", B) == 0
    assert lim.retry_after("bob", A) == 0
    lim.finish("alice", A, success=False, counted=False)
    assert lim.retry_after("alice", A) == 0


def test_delay_grows_then_locks_out_the_pair_only() -> None:
    """Each failure doubles the wait; max_failures locks (alice, A) out for `lockout`; (alice, B) stays free."""
    lim = limiter(max_failures=4, lockout=10_000.0)
    waits = []
    for _ in range(3):
        fail(lim, "alice", A)
        waits.append(lim.retry_after("alice", A))
    assert waits == pytest.approx([BASE, 2 * BASE, 4 * BASE], abs=1.0)
    fail(lim, "alice", A)
    assert lim.retry_after("alice", A) == pytest.approx(10_000.0, abs=1.0)
    assert lim.retry_after("alice", B) == 0  # an attacker at A cannot lock alice out elsewhere


def test_lockout_ends_on_the_clock() -> None:
    """A lockout lasts `lockout` seconds of the injected clock, then the pair may try again."""
    clock = ManualClock()
    lim = limiter(clock, max_failures=1, lockout=500.0)
    fail(lim, "alice", A)
    assert lim.retry_after("alice", A) == pytest.approx(500.0)
    clock.now += 499.0
    assert lim.retry_after("alice", A) == pytest.approx(1.0)
    clock.now += 1.0
    assert lim.retry_after("alice", A) == 0


def test_other_users_from_elsewhere_are_not_affected() -> None:
    """Failures for alice never slow bob from another address."""
    lim = limiter()
    fail(lim, "alice", A, times=5)
    assert lim.retry_after("bob", B) == 0


def test_success_clears_the_pair_only() -> None:
    """A valid login forgets the pair's failures, not the address's."""
    lim = limiter(address_free_failures=1)
    fail(lim, "alice", A, times=2)
    lim.begin("alice", A)
    lim.finish("alice", A, success=True)
    assert lim.retry_after("alice", A) > 0  # the address is still slowed...
    assert lim.retry_after("carol", A) > 0
    assert lim.retry_after("alice", B) == 0  # ...not alice


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
    """At most per_address_inflight attempts from one address are in PAM at once (at least one)."""
    lim = limiter(per_address_inflight=2)
    lim.begin("u1", A)
    lim.begin("u2", A)
    assert lim.retry_after("u3", A) == BASE
    assert lim.retry_after("u3", B) == 0
    single = limiter(per_address_inflight=0)  # pool_size - 1 with a pool of one
    single.begin("u1", A)
    assert single.retry_after("u2", A) == BASE
    assert single.retry_after("u2", B) == 0


def test_uncounted_finish_only_frees_the_slot() -> None:
    """counted=False (a worker error, not the user's) records no failure."""
    lim = limiter()
    for _ in range(10):
        lim.begin("alice", A)
        lim.finish("alice", A, success=False, counted=False)
    assert lim.retry_after("alice", A) == 0


def test_old_failures_are_forgotten() -> None:
    """Records older than forget_after are dropped (the lockout included), so the tables do not grow."""
    clock = ManualClock()
    lim = limiter(clock, forget_after=50.0, lockout=10.0, max_failures=1)
    fail(lim, "alice", A)
    assert lim.retry_after("alice", A) > 0
    clock.now += 51.0
    assert lim.retry_after("alice", A) == 0
    assert not lim._pairs
    assert not lim._addresses


def test_ipv6_counts_per_64() -> None:
    """Addresses of one IPv6 /64 are one source (a host holds the whole /64); mapped IPv4 is plain IPv4."""
    lim = limiter(address_free_failures=0, max_failures=1, lockout=1000.0)
    fail(lim, "alice", "2001:db8:1:2::10")
    assert lim.retry_after("bob", "2001:db8:1:2::99") == pytest.approx(1000.0)
    assert lim.retry_after("bob", "2001:db8:1:3::10") == 0
    assert source_of("::ffff:10.0.0.1") == source_of(A) == A
    assert source_of("not an address") == "not an address"

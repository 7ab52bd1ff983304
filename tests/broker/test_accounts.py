"""AccountSchedule, the pure policy of account re-checks: when each logged-in user is due, on an injected clock."""

from __future__ import annotations

import pytest
from support.clock import ManualClock

from ssd.broker.accounts import LONGEST_SLEEP, AccountSchedule

HOUR = 3600.0


def schedule(clock: ManualClock, interval: float = HOUR, retry: float = 30.0) -> AccountSchedule:
    """A schedule on *clock*."""
    return AccountSchedule(interval, retry=retry, clock=clock)


def test_a_login_counts_as_a_check() -> None:
    """A session's login was a check: its user is due *interval* after the newest login, not before."""
    clock = ManualClock(1_000_000.0)
    plan = schedule(clock)
    logins = {"alice": clock.now - 10.0}
    assert plan.due(logins) == []
    assert plan.wait(logins) == pytest.approx(LONGEST_SLEEP)  # never sleeps past a minute
    clock.now += HOUR - 10.0
    assert plan.due(logins) == ["alice"]


def test_sessions_from_before_a_restart_are_due_at_once() -> None:
    """Sessions loaded from the state store with old logins are checked right away."""
    clock = ManualClock(1_000_000.0)
    plan = schedule(clock)
    logins = {"alice": clock.now - 2 * HOUR, "bob": clock.now - 60.0}
    assert plan.due(logins) == ["alice"]
    assert plan.wait(logins) == 0.0


def test_one_check_in_flight_per_user() -> None:
    """A due user with a check in flight is not due again, nor counted in the wait."""
    clock = ManualClock(1_000_000.0)
    plan = schedule(clock, interval=50.0)
    logins = {"alice": clock.now - 200.0}
    assert plan.begin("alice") is True
    assert plan.begin("alice") is False
    assert plan.due(logins) == []
    assert plan.wait(logins) == pytest.approx(50.0)


def test_a_passed_check_sets_the_next_one_an_interval_later() -> None:
    """After a passing check the user is due again exactly *interval* later (at least hourly by default)."""
    clock = ManualClock(1_000_000.0)
    plan = schedule(clock, interval=100.0)
    logins = {"alice": clock.now - 500.0}
    plan.begin("alice")
    plan.passed("alice")
    clock.now += 99.0
    assert plan.due(logins) == []
    assert plan.wait(logins) == pytest.approx(1.0)
    clock.now += 1.0
    assert plan.due(logins) == ["alice"]


def test_no_verdict_is_retried_after_the_retry_pause() -> None:
    """A check without a verdict (auth pool busy) is tried again after *retry*, not in a hot loop."""
    clock = ManualClock(1_000_000.0)
    plan = schedule(clock, interval=100.0, retry=30.0)
    logins = {"alice": clock.now - 500.0}
    plan.begin("alice")
    plan.undecided("alice")
    assert plan.due(logins) == []
    assert plan.wait(logins) == pytest.approx(30.0)
    clock.now += 30.0
    assert plan.due(logins) == ["alice"]


def test_a_new_login_after_a_refusal_starts_afresh() -> None:
    """A refused user is forgotten; a later login (the account enabled again) is due an interval after it."""
    clock = ManualClock(1_000_000.0)
    plan = schedule(clock, interval=100.0)
    plan.begin("alice")
    plan.refused("alice")
    clock.now += 5.0
    logins = {"alice": clock.now}
    assert plan.due(logins) == []
    clock.now += 100.0
    assert plan.due(logins) == ["alice"]


def test_users_without_sessions_are_forgotten() -> None:
    """prune() drops what it knows of users without a live session (the tables stay small)."""
    clock = ManualClock(1_000_000.0)
    plan = schedule(clock)
    plan.begin("alice")
    plan.passed("alice")
    plan.begin("bob")
    plan.undecided("bob")
    plan.prune({"carol": clock.now})
    assert not plan._checked
    assert not plan._not_before

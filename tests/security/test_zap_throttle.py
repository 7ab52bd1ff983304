"""Finding 11: the per-address connection throttle (run in ZAP, before any login) holds bounded memory.

Pure policy with an injected clock: an attacker with many source addresses (an IPv6 /64 has
plenty) makes the throttle hold at most ``max_addresses`` buckets, yet a throttled address
stays throttled while others come and go below that bound.
"""

from __future__ import annotations

from support.clock import ManualClock

from ssd.broker.policy import ConnectionThrottle

MANY = 25_000


def test_many_addresses_at_once_are_bounded_by_the_cap() -> None:
    """25,000 addresses, each taking a token at the same instant (no bucket is full): at most the cap stays."""
    throttle = ConnectionThrottle(burst=5, rate=0.5, clock=ManualClock())
    for n in range(MANY):
        assert throttle.admit(f"2001:db8::{n:x}")
        assert len(throttle) <= throttle.max_addresses
    assert throttle.max_addresses == 10_000


def test_buckets_that_time_refilled_are_forgotten() -> None:
    """Once burst/rate seconds passed, a bucket is full again: it is dropped, not kept."""
    clock = ManualClock()
    throttle = ConnectionThrottle(burst=4, rate=2.0, clock=clock)
    for n in range(100):
        throttle.admit(f"10.0.{n // 256}.{n % 256}")
    assert len(throttle) == 100
    clock.now += 4 / 2.0
    assert throttle.admit("192.0.2.1")
    assert len(throttle) == 1


def test_a_throttled_address_stays_throttled_while_others_churn() -> None:
    """Below the cap, other addresses coming and going do not hand a refused address a fresh burst."""
    clock = ManualClock()
    throttle = ConnectionThrottle(burst=3, rate=0.01, clock=clock, max_addresses=1000)
    assert [throttle.admit("198.51.100.7") for _ in range(4)] == [True, True, True, False]
    for n in range(900):
        clock.now += 0.001
        throttle.admit(f"203.0.{n // 256}.{n % 256}")
    assert not throttle.admit("198.51.100.7")
    assert len(throttle) <= 1000

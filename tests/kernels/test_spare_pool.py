"""The spare pool's decisions alone (ssd.kernels.spares), with an injected clock and real folders."""

from __future__ import annotations

import os
from pathlib import Path

from ssd.kernels.spares import Spare, SpareKey, SparePool, env_stamp, spares_wanted

KEY = SpareKey("/envs/sci", "ipykernel")
STAMP = ((1, 2, 3, 4),)


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _pool_with_spare(clock: Clock, env_vars: dict[str, str] | None = None, *, ready: bool = True) -> SparePool:
    pool = SparePool(clock)
    pool.used(KEY, env_vars or {}, "/home/a")
    pool.add(Spare("s1", KEY, env_vars or {}, "/home/a", STAMP))
    if ready:
        pool.mark_ready("s1")
    return pool


def test_a_start_takes_only_a_ready_spare_of_its_key_variables_and_environment() -> None:
    clock = Clock()
    assert _pool_with_spare(clock, ready=False).take(KEY, {}, STAMP) is None  # still starting
    assert _pool_with_spare(clock).take(SpareKey("/envs/sci", "spyder"), {}, STAMP) is None  # another kind
    assert _pool_with_spare(clock).take(KEY, {"TZ": "UTC"}, STAMP) is None  # other variables
    assert _pool_with_spare(clock).take(KEY, {}, ((9, 9, 9, 9),)) is None  # the environment changed
    pool = _pool_with_spare(clock)
    taken = pool.take(KEY, {}, STAMP)
    assert taken is not None
    assert taken.kernel_id == "s1"
    assert len(pool) == 0


def test_a_start_in_a_changed_environment_retires_its_stale_spares_so_the_refill_starts_new_ones() -> None:
    clock = Clock()
    pool = _pool_with_spare(clock)
    pool.add(Spare("s2", SpareKey("/envs/sci", "spyder"), {}, "/home/a", STAMP))  # another key: kept
    assert pool.retire_stale(KEY, STAMP) == []
    changed = ((9, 9, 9, 9),)
    assert pool.retire_stale(KEY, changed) == ["s1"]
    assert [spare.kernel_id for spare in pool.spares.values()] == ["s2"]
    assert pool.missing(KEY, 1, 5) == 1  # refilled after the cold start


def test_a_start_with_other_variables_retires_the_spares_of_the_old_template() -> None:
    pool = _pool_with_spare(Clock(), {"TZ": "UTC"})
    assert pool.used(KEY, {"TZ": "Europe/Paris"}, "/home/a") == ["s1"]
    assert pool.template(KEY) == ({"TZ": "Europe/Paris"}, "/home/a")


def test_missing_counts_wanted_spares_within_the_room_left() -> None:
    clock = Clock()
    assert SparePool(clock).missing(KEY, 2, 5) == 0  # no start to follow yet
    pool = _pool_with_spare(clock)
    assert pool.missing(KEY, 2, 5) == 1
    assert pool.missing(KEY, 2, 0) == 0  # the user is at their limit
    assert pool.missing(KEY, 1, 5) == 0


def test_idle_spares_go_after_spare_idle_without_a_start() -> None:
    clock = Clock()
    pool = _pool_with_spare(clock)
    clock.now += 899
    assert pool.idle(900) == []
    pool.used(KEY, {}, "/home/a")  # a start renews the key
    clock.now += 899
    assert pool.idle(900) == []
    clock.now += 1
    assert pool.idle(900) == ["s1"]
    assert pool.template(KEY) is None  # not refilled any more
    assert pool.missing(KEY, 1, 5) == 0


def test_outdated_and_clear() -> None:
    pool = _pool_with_spare(Clock())
    assert pool.outdated(lambda prefix: STAMP) == []
    assert pool.outdated(lambda prefix: ((5, 5, 5, 5),)) == ["s1"]
    assert pool.clear() == ["s1"]
    assert pool.template(KEY) is None


def test_env_stamp_changes_when_a_package_is_installed_or_removed(tmp_path: Path) -> None:
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (tmp_path / "conda-meta").mkdir()
    for folder in (site, tmp_path / "conda-meta"):  # an old environment: a change now gets a new mtime
        os.utime(folder, (1_000_000, 1_000_000))
    before = env_stamp(str(tmp_path))
    assert env_stamp(str(tmp_path)) == before
    (site / "probe").mkdir()
    installed = env_stamp(str(tmp_path))
    assert installed != before
    (tmp_path / "conda-meta" / "probe-1.0-0.json").write_text("{}")
    assert env_stamp(str(tmp_path)) != installed


def test_the_host_caps_the_users_own_number() -> None:
    assert spares_wanted(1, None) == 1
    assert spares_wanted(2, 5) == 2
    assert spares_wanted(2, 0) == 0

"""The flood policy alone: which connection it names, and when it names none."""

from __future__ import annotations

from ssd.floodguard.policy import FloodPolicy

MIB = 1 << 20


def policy(now: list[float]) -> FloodPolicy:
    """A policy with a 10 MiB threshold from a 100 MiB start, on a hand-driven clock."""
    made = FloodPolicy(10 * MIB, min_bytes=MIB, cooldown=0.2, snapshot_every=1.0, clock=lambda: now[0])
    made.start(100 * MIB)
    return made


def test_below_the_threshold_nothing_is_cut() -> None:
    """Under the threshold even a heavy sender is left alone."""
    chooser = policy([0.0])
    assert not chooser.over(110 * MIB)
    assert chooser.choose(110 * MIB, {3: 500 * MIB}) is None


def test_over_the_threshold_the_heaviest_recent_sender_is_cut() -> None:
    """Over the threshold, the connection that received the most since memory was calm is named."""
    now = [0.0]
    chooser = policy(now)
    assert chooser.choose(101 * MIB, {3: 50 * MIB, 4: 10}) is None  # calm: a snapshot
    now[0] = 0.5
    # 3 received a lot long ago (a big legitimate transfer); 4 is flooding now.
    assert chooser.choose(140 * MIB, {3: 51 * MIB, 4: 20 * MIB}) == 4


def test_light_senders_are_never_cut() -> None:
    """When nobody received min_bytes since the calm snapshot, memory growth is not theirs: nobody is cut."""
    chooser = policy([0.0])
    chooser.choose(101 * MIB, {3: 0, 4: 0})
    assert chooser.choose(140 * MIB, {3: MIB // 2, 4: 1000}) is None


def test_one_cut_then_a_cooldown() -> None:
    """After a cut the policy waits the cooldown before naming the next connection."""
    now = [0.0]
    chooser = policy(now)
    chooser.choose(101 * MIB, {})
    assert chooser.choose(140 * MIB, {3: 20 * MIB, 4: 30 * MIB}) == 4
    chooser.forget(4)
    now[0] = 0.1
    assert chooser.choose(140 * MIB, {3: 20 * MIB}) is None
    now[0] = 0.3
    assert chooser.choose(140 * MIB, {3: 20 * MIB}) == 3


def test_counts_are_wanted_when_over_or_when_the_snapshot_is_due() -> None:
    """Byte counts are read when memory is over, or once a snapshot interval while calm."""
    now = [0.0]
    chooser = policy(now)
    assert chooser.wants_counts(101 * MIB)  # no snapshot yet
    chooser.choose(101 * MIB, {3: 5})
    assert not chooser.wants_counts(101 * MIB)
    assert chooser.wants_counts(120 * MIB)
    now[0] = 1.5
    assert chooser.wants_counts(101 * MIB)


def test_a_reused_connection_key_starts_from_zero() -> None:
    """A forgotten connection's snapshot does not discount a new connection that got the same key (fd)."""
    now = [0.0]
    chooser = policy(now)
    chooser.choose(101 * MIB, {5: 40 * MIB})
    chooser.forget(5)
    assert chooser.choose(140 * MIB, {5: 30 * MIB}) == 5


def test_no_baseline_means_never_over() -> None:
    """Before start() nothing is over the threshold."""
    chooser = FloodPolicy(MIB)
    assert not chooser.over(10**12)


def test_each_open_connection_adds_its_allowance() -> None:
    """With per_connection set, the threshold rises with the connections open now and falls as they end."""
    chooser = FloodPolicy(10 * MIB, per_connection=MIB)
    chooser.start(100 * MIB)
    for connection in range(5):
        chooser.opened(connection)
    assert not chooser.over(114 * MIB)
    assert chooser.over(116 * MIB)
    chooser.forget(0)
    chooser.forget(1)
    assert chooser.over(114 * MIB)

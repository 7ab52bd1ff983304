"""How much a worker may send the broker: a rate in messages and bytes, and when to give up on it.

A per-user worker is its user's to control (DESIGN §1, rule 1), so the broker
meters it: a token bucket for messages and one for bytes. A message beyond the
rate is dropped; a worker that keeps flooding (``KILL_AFTER`` drops within
``KILL_WINDOW`` seconds) is stopped, which costs only its own user. A message
of countless tiny frames never reaches the quota (libzmq holds it until it is
whole): the broker's flood guard (``ssd.floodguard``) cuts its connection, and
a user cut ``CUTS_BEFORE_STOP`` times within ``CUT_WINDOW`` seconds has its
workers stopped (``CutStrikes``). Pure bookkeeping: the clock is an argument,
the backend loop acts on the verdict.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = [
    "CUTS_BEFORE_STOP",
    "CUT_WINDOW",
    "KILL_AFTER",
    "KILL_WINDOW",
    "CutStrikes",
    "LogThrottle",
    "TokenBucket",
    "Verdict",
    "WorkerQuota",
]

# Far above what a worker does (a heartbeat a second, a kernel's few lifecycle events, a tool's output
# lines), far below what a flood does (a loop of sends: ~10^5 messages a second).
MESSAGE_RATE = 1000.0
MESSAGE_BURST = 5000.0
BYTE_RATE = float(16 << 20)
BYTE_BURST = float(32 << 20)
KILL_AFTER = 1000  # messages dropped within KILL_WINDOW seconds before the worker is stopped
KILL_WINDOW = 10.0
# A flood the quota cannot see (one message of countless frames, cut by the flood guard before it is whole):
# a user whose worker connections are cut twice within CUT_WINDOW seconds has its workers stopped.
CUTS_BEFORE_STOP = 2
CUT_WINDOW = 60.0


class Verdict(enum.Enum):
    """What to do with one message."""

    ACCEPT = "accept"
    DROP = "drop"
    KILL = "kill"


@dataclass
class TokenBucket:
    """Up to *burst* tokens, refilled at *rate* a second."""

    rate: float
    burst: float
    tokens: float = -1.0  # full at the first use
    stamp: float = 0.0

    def take(self, amount: float, now: float) -> bool:
        """Take *amount* tokens if there are that many (after refilling up to *now*)."""
        if self.tokens < 0:
            self.tokens, self.stamp = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if amount > self.tokens:
            return False
        self.tokens -= amount
        return True


@dataclass
class WorkerQuota:
    """The rate one worker may send at, and how many of its messages were dropped lately."""

    messages: TokenBucket = field(default_factory=lambda: TokenBucket(MESSAGE_RATE, MESSAGE_BURST))
    data: TokenBucket = field(default_factory=lambda: TokenBucket(BYTE_RATE, BYTE_BURST))
    dropped: int = 0  # since window_start
    window_start: float = float("-inf")

    def judge(self, size: int, now: float) -> Verdict:
        """Charge one message of *size* bytes; say whether to handle it, drop it, or stop its sender."""
        if self.messages.take(1.0, now) and self.data.take(float(size), now):
            return Verdict.ACCEPT
        if now - self.window_start > KILL_WINDOW:
            self.window_start, self.dropped = now, 0
        self.dropped += 1
        return Verdict.KILL if self.dropped >= KILL_AFTER else Verdict.DROP


class LogThrottle:
    """At most one log line per key and *interval*: a flood must not fill the disk with its complaints."""

    def __init__(self, interval: float = 10.0, max_keys: int = 1024) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._last: dict[str, tuple[float, int]] = {}  # key -> (when last logged, suppressed since)

    def allow(self, key: str, now: float) -> int | None:
        """None to stay silent; else how many lines were suppressed for *key* since the last one."""
        last, suppressed = self._last.get(key, (float("-inf"), 0))
        if now - last < self.interval:
            self._last[key] = (last, suppressed + 1)
            return None
        if key not in self._last and len(self._last) >= self.max_keys:
            self._last = {k: v for k, v in self._last.items() if now - v[0] < self.interval}
            if len(self._last) >= self.max_keys:
                return None
        self._last[key] = (now, 0)
        return suppressed


class CutStrikes:
    """Counts the flood guard's cuts per user: a second cut within *window* seconds means stop that user."""

    def __init__(self, before_stop: int = CUTS_BEFORE_STOP, window: float = CUT_WINDOW) -> None:
        self.before_stop = before_stop
        self.window = window
        self._cuts: dict[str, list[float]] = {}  # user -> times of recent cuts

    def strike(self, user: str, now: float) -> bool:
        """Note a cut of *user*'s connection; True when it is time to stop that user's workers."""
        self._cuts = {u: [t for t in times if now - t < self.window] for u, times in self._cuts.items()}
        self._cuts = {u: times for u, times in self._cuts.items() if times}
        recent = self._cuts.setdefault(user, [])
        recent.append(now)
        if len(recent) < self.before_stop:
            return False
        del self._cuts[user]
        return True

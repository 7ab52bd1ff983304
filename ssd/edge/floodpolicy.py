"""When the edge grows, which connection to cut: pure policy, no sockets or threads (see floodguard.py).

A flood is one multipart message of very many tiny frames: libzmq holds every
frame (about 64 bytes each) until the last arrives, so memory grows with what
the sender sent. When the edge's memory is more than *threshold* bytes above
its level at start, the policy names the connection that has received the
most bytes, provided it received at least *min_bytes* (a client that sent
little is never the cause), and then waits *cooldown* seconds for libzmq to
drop that connection's partial message before it names another.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

__all__ = ["FloodPolicy"]

MIN_BYTES = 1 << 20
COOLDOWN = 0.2


class FloodPolicy:
    """Chooses the connection to cut when memory is over the threshold."""

    def __init__(
        self,
        threshold: int,
        *,
        min_bytes: int = MIN_BYTES,
        cooldown: float = COOLDOWN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.min_bytes = min_bytes
        self.cooldown = cooldown
        self._clock = clock
        self._baseline: int | None = None
        self._quiet_until = 0.0

    def start(self, memory: int) -> None:
        """Take *memory* (bytes) as the level the threshold is counted from."""
        self._baseline = memory

    def over(self, memory: int) -> bool:
        """Tell whether *memory* is above the baseline by more than the threshold."""
        return self._baseline is not None and memory - self._baseline > self.threshold

    def choose(self, memory: int, received: Mapping[int, int]) -> int | None:
        """The connection (key of *received*: bytes each received so far) to cut now, or None."""
        now = self._clock()
        if not self.over(memory) or now < self._quiet_until or not received:
            return None
        heaviest = max(received, key=lambda conn: received[conn])
        if received[heaviest] < self.min_bytes:
            return None
        self._quiet_until = now + self.cooldown
        return heaviest

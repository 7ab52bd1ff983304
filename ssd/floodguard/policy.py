"""When memory grows, which connection to cut: pure policy, no sockets or threads (see guard.py).

A flood is one multipart message of very many tiny frames: libzmq holds every
frame (about 64 bytes each) until the last arrives, so memory grows with what
the sender sent. While memory is calm (within *threshold* bytes of its level
at start, plus *per_connection* bytes for each connection open now: libzmq's
own buffers, about 64 KiB a CURVE connection) the policy keeps a snapshot of how many bytes each connection had
received, refreshed every *snapshot_every* seconds. Once memory is over the
threshold it names the connection that received the most since that snapshot,
provided that is at least *min_bytes* (a client that sent little is never the
cause), and then waits *cooldown* seconds for libzmq to drop that connection's
partial message before it names another.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

__all__ = ["FloodPolicy"]

MIN_BYTES = 1 << 20
COOLDOWN = 0.2
SNAPSHOT_EVERY = 1.0


class FloodPolicy:
    """Chooses the connection to cut when memory is over the threshold."""

    def __init__(
        self,
        threshold: int,
        *,
        min_bytes: int = MIN_BYTES,
        cooldown: float = COOLDOWN,
        snapshot_every: float = SNAPSHOT_EVERY,
        per_connection: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.per_connection = per_connection
        self._open: set[int] = set()
        self.min_bytes = min_bytes
        self.cooldown = cooldown
        self.snapshot_every = snapshot_every
        self._clock = clock
        self._baseline: int | None = None
        self._calm: dict[int, int] = {}  # connection -> bytes received when memory was last calm
        self._calm_at = float("-inf")
        self._quiet_until = float("-inf")

    def start(self, memory: int) -> None:
        """Take *memory* (bytes) as the level the threshold is counted from."""
        self._baseline = memory

    def over(self, memory: int) -> bool:
        """Tell whether *memory* is above the baseline by more than the threshold (and the open connections'
        allowance)."""
        allowance = self.threshold + self.per_connection * len(self._open)
        return self._baseline is not None and memory - self._baseline > allowance

    def opened(self, connection: int) -> None:
        """*connection* was accepted."""
        self._open.add(connection)

    def wants_counts(self, memory: int) -> bool:
        """Whether choose() needs fresh byte counts now (memory is over, or the calm snapshot is due)."""
        return self.over(memory) or self._clock() - self._calm_at >= self.snapshot_every

    def forget(self, connection: int) -> None:
        """*connection* ended (its key may be reused by a new one)."""
        self._calm.pop(connection, None)
        self._open.discard(connection)

    def choose(self, memory: int, received: Mapping[int, int]) -> int | None:
        """The connection (key of *received*: bytes each received so far) to cut now, or None."""
        now = self._clock()
        if not self.over(memory):
            self._calm, self._calm_at = dict(received), now
            return None
        if now < self._quiet_until or not received:
            return None
        recent = {conn: count - self._calm.get(conn, 0) for conn, count in received.items()}
        heaviest = max(recent, key=lambda conn: recent[conn])
        if recent[heaviest] < self.min_bytes:
            return None
        self._quiet_until = now + self.cooldown
        return heaviest

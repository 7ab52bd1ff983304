"""A clock the test moves by hand, for the code that takes an injected time source (time is the subject)."""

from __future__ import annotations

__all__ = ["ManualClock"]


class ManualClock:
    """Returns ``now`` until the test changes it; call it as the code under test calls ``time.time``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

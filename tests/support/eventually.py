"""Waiting on a condition instead of sleeping a fixed time: tests must pass on a loaded machine."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["eventually"]

T = TypeVar("T")


def eventually(check: Callable[[], T | None], what: str, *, timeout: float = 20.0, interval: float = 0.05) -> T:
    """Call *check* until it returns something other than None or False; fail naming *what* after *timeout*.

    A check that raises AssertionError counts as not yet; its last message is shown on failure.
    """
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            result = check()
        except AssertionError as exc:
            result, last = None, str(exc)
        if result is not None and result is not False:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}" + (f": {last}" if last else ""))
        time.sleep(interval)

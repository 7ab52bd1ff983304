"""Keeping a kernel's lease: a frontend (the Jupyter provisioner, a Spyder plugin) renews it while it lives.

The renewals run in a daemon thread with their own event loop, so they go on
whichever way the frontend runs its loop (jupyter_client's blocking API runs
none between calls), and they end with the frontend's process: a Jupyter
server that is killed, hung up or interrupted stops renewing, and the host
shuts the kernel down after the lease and its grace.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from ssd.errors import SSDError

__all__ = ["LeaseKeeper", "Trouble"]


class Trouble:
    """One warning per problem, then quiet until it changes or goes away (a poll every few seconds
    must not write a traceback each time)."""

    def __init__(self, log: logging.Logger | logging.LoggerAdapter[logging.Logger]) -> None:
        self._log = log
        self._current: str | None = None

    def report(self, kind: str | None, text: str = "") -> None:
        """Say *text* if the kind of problem is new; None: things work again (said once, when they did not)."""
        if kind == self._current:
            return
        if kind is not None:
            self._log.warning("%s", text)
        else:
            self._log.info("ssd-provisioner: the host answers again")
        self._current = kind


class LeaseKeeper:
    """Calls *renew* every *interval* seconds from a daemon thread until ``stop``; errors go to *failed*."""

    def __init__(
        self, renew: Callable[[], Coroutine[Any, Any, None]], interval: float, failed: Callable[[SSDError | None], None]
    ) -> None:
        self._renew = renew
        self.interval = interval
        self._failed = failed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """True while the renewing thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start renewing (a no-op while it runs)."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ssd-lease", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing and wait for the thread (a renewal under way ends within its request timeout)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30.0)
        self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                asyncio.run(self._renew())
            except SSDError as exc:
                self._failed(exc)
            else:
                self._failed(None)

"""The plugin's network thread: one asyncio loop off the Qt main thread, results back as Qt signals.

Spyder's window must never wait on the network. Every coroutine the plugin runs
(zeroconf browsing, requests to a daemon, lease renewals, progress events) runs
in this thread's loop; ``LoopThread.call`` hands the outcome to a callback on
the Qt main thread through a queued signal.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from qtpy.QtCore import QObject, Signal

__all__ = ["LoopThread"]

T = TypeVar("T")


class _Relay(QObject):
    """Lives in the main thread; a signal emitted from the loop thread is delivered there (queued)."""

    done = Signal(object, object, object)  # callback, result, error

    def __init__(self) -> None:
        super().__init__()
        self.done.connect(self._deliver)

    @staticmethod
    def _deliver(callback: Callable[[Any, BaseException | None], None], result: Any, error: Any) -> None:
        callback(result, error)


class LoopThread:
    """A daemon thread running an asyncio loop until ``stop``; built on the Qt main thread."""

    def __init__(self, name: str = "ssd-spyder") -> None:
        self._relay = _Relay()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run *coro* in the loop; the returned future may be waited on only off the main thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], callback: Callable[[T | None, BaseException | None], None]) -> None:
        """Run *coro*; ``callback(result, None)`` or ``callback(None, error)`` then runs on the Qt main thread."""
        future = self.submit(coro)

        def finished(done: concurrent.futures.Future[T]) -> None:
            if done.cancelled():
                self._relay.done.emit(callback, None, asyncio.CancelledError())
                return
            error = done.exception()
            self._relay.done.emit(callback, None if error else done.result(), error)

        future.add_done_callback(finished)

    def emit_soon(self, callback: Callable[[Any, BaseException | None], None], value: Any) -> None:
        """From the loop thread: run ``callback(value, None)`` on the Qt main thread."""
        self._relay.done.emit(callback, value, None)

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel what still runs, stop the loop and join the thread."""
        if not self._thread.is_alive():
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            self.submit(cancel_all()).result(timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()

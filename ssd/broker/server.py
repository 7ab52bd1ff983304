"""The broker process: builds its parts (``ssd.broker.compose``), runs them until told to stop, stops them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any

from ssd import protocol
from ssd.broker.announce import Announcer
from ssd.broker.compose import BrokerOptions, Parts, compose
from ssd.broker.sockets import remove_runtime_file, write_runtime_file
from ssd.errors import ErrorCode

__all__ = ["Broker", "BrokerOptions"]

log = logging.getLogger(__name__)

EDGE_STOP_GRACE = 2.0
DRAIN_POLL = 0.05


class Broker:
    """One asyncio process: the edge's link (control and events), key port, worker backend."""

    def __init__(self, options: BrokerOptions) -> None:
        self.options = options
        self.config = options.config
        self.failed = False  # set when a loop died: the daemon then exits non-zero
        self._parts: Parts | None = None  # once start() built them
        self._resources = contextlib.ExitStack()  # what start() opened, closed last on shutdown
        self._tasks: list[asyncio.Task[Any]] = []
        self._announcing: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    @property
    def ports(self) -> dict[str, int]:
        """The public ports by name (control, events, key); empty before start()."""
        return self._parts.wiring.ports if self._parts is not None else {}

    @property
    def announcer(self) -> Announcer | None:
        """The zeroconf announcer, if discovery.announce is on and start() built it."""
        return self._parts.keepers.announcer if self._parts is not None else None

    async def start(self) -> None:
        """Build every part, then start the loops, the workers, the key port, the edge and the announcement."""
        self._parts = parts = compose(self.options, self._resources)
        self._start_loops(parts)
        parts.starter.start_pool(parts.specs, parts.keepers.kernels.users())
        self._spawn(parts.key_server.serve(parts.wiring.listeners["key"]))
        parts.keepers.edge.start()
        write_runtime_file(self.options.state_dir, self._runtime_facts(), parts.wiring.ports)
        if parts.keepers.announcer is not None:
            self._announcing = self._spawn(parts.keepers.announcer.run())
        self._log_listening(parts.wiring.ports)

    def _start_loops(self, parts: Parts) -> None:
        keepers = parts.keepers
        loops = [
            parts.control.run(),
            parts.router.run(),
            parts.router.watch(),
            parts.router.follow_exits(),
            parts.accounts.run(),
            keepers.events.publish_status(self.config.server.status_interval, keepers.summary.status),
        ]
        if parts.cut_response is not None:
            loops.append(parts.cut_response.run())
        for coro in loops:
            self._spawn(coro)

    def _runtime_facts(self) -> dict[str, Any]:
        keys = self.options.keys
        return {
            "mode": self.options.mode,
            "name": self.options.name,
            "bind": self.config.server.bind,
            "fingerprint": keys.fingerprint,
            "public_key": keys.public.decode(),
        }

    def _log_listening(self, ports: dict[str, int]) -> None:
        log.info(
            "ssd %s mode listening on %s: control %d, events %d, key %d (fingerprint %s)",
            self.options.mode,
            self.config.server.bind,
            ports["control"],
            ports["events"],
            ports["key"],
            self.options.keys.fingerprint,
        )

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        task.add_done_callback(self._task_ended)
        self._tasks.append(task)
        return task

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        """A broker loop must never end on its own: if one does, stop (fail closed)."""
        if task.cancelled():
            return
        error = task.exception()
        log.critical("broker task %s ended (%r); shutting down", task.get_name(), error, exc_info=error)
        self.failed = True
        self.stop()

    async def wait_stopped(self) -> None:
        """Return once stop() was called."""
        await self._stopped.wait()

    def stop(self) -> None:
        """Ask the broker to shut down (safe to call from a signal handler)."""
        self._stopped.set()

    async def shutdown(self) -> None:
        """Stop accepting, finish or fail in-flight requests, stop workers, close sockets."""
        parts = self._parts
        if parts is not None:  # else start() failed before the parts existed: only close what it opened
            await self._stop_serving(parts)
            await self._stop_processes(parts)
            await self._cancel_tasks()
            remove_runtime_file(self.options.state_dir)
        self._resources.close()
        if parts is not None:
            log.info("ssd stopped")

    async def _stop_serving(self, parts: Parts) -> None:
        """Refuse new requests, say goodbye on zeroconf, give in-flight ones the grace to finish, fail the rest."""
        parts.control.accepting = False
        announcer = parts.keepers.announcer
        if announcer is not None and self._announcing is not None:  # goodbye first: browsers drop this host at once
            self._announcing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._announcing
            await announcer.stop()
        registry = parts.core.registry
        deadline = time.monotonic() + self.config.server.shutdown_grace
        while registry.by_request and time.monotonic() < deadline:  # noqa: ASYNC110 (bounded poll on shutdown)
            await asyncio.sleep(DRAIN_POLL)
        for pending in registry.drain():
            error = protocol.error_content(ErrorCode.SHUTTING_DOWN, "the server shut down before answering")
            parts.replies.answer(pending, error)

    async def _stop_processes(self, parts: Parts) -> None:
        """Stop the workers (their kernels too with kernels.stop_on_exit), then the edge."""
        supervisor = parts.keepers.supervisor
        supervisor.stopping_now()  # workers that exit on STOP are not restarted
        parts.router.stop_workers()
        grace, kernels = self.config.server.shutdown_grace, self.config.kernels
        # Kernel workers told to stop their kernels need the kernels' own grace period, and a little more.
        worker_grace = max(grace, kernels.shutdown_grace + 2.0) if kernels.stop_on_exit else grace
        await supervisor.stop_all(worker_grace)
        await parts.keepers.edge.stop(EDGE_STOP_GRACE)

    async def _cancel_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

"""The flood guard on the worker backend, and what the broker does when it cuts a connection.

Frames from a worker are bounded, their count is not: a user's own worker
could send one message of countless 2-byte frames that libzmq holds whole
(DESIGN §1, rule 1). The guard (``ssd.floodguard``) cuts such a connection;
a cut that gave back half the threshold held a flood, and a user cut again
within ``CUT_WINDOW`` has every worker stopped (``WorkerRouter.connection_cut``)
and every connection cut. The guard reports cuts from its thread; they reach
the event loop through a queue.
"""

from __future__ import annotations

import asyncio
import logging
import os

import zmq
import zmq.asyncio

from ssd.broker.backend import WorkerRouter
from ssd.floodguard.guard import Cut, FloodGuard
from ssd.floodguard.policy import FloodPolicy

__all__ = ["CONNECTION_MEMORY", "CutResponse", "backend_guard"]

log = logging.getLogger(__name__)

# What libzmq holds for one CURVE connection of the backend (measured: 64 MiB for 1000), which the flood guard
# allows on top of workers.flood_threshold: the broker grows legitimately with its workers.
CONNECTION_MEMORY = 80 << 10


def backend_guard(
    ctx: zmq.asyncio.Context, backend: zmq.asyncio.Socket, threshold_mb: int, cuts: asyncio.Queue[Cut]
) -> FloodGuard | None:
    """A started flood guard on *backend* (call before binding it) reporting to *cuts*; None if turned off."""
    if not threshold_mb:
        log.warning("workers.flood_threshold is 0: a user's own worker can grow the broker without bound")
        return None
    loop = asyncio.get_running_loop()

    def report(cut: Cut) -> None:  # in the guard's thread
        loop.call_soon_threadsafe(cuts.put_nowait, cut)

    guard = FloodGuard(
        zmq.Context.shadow(ctx.underlying),
        [backend],
        FloodPolicy(threshold_mb << 20, per_connection=CONNECTION_MEMORY),
        what="the broker",
        on_cut=report,
    )
    guard.start_guarding()
    return guard


class CutResponse:
    """Acts on the guard's cuts: a flood's costs its user; an innocent bystander's counts against nobody."""

    def __init__(self, cuts: asyncio.Queue[Cut], guard: FloodGuard, router: WorkerRouter, threshold_mb: int) -> None:
        self.cuts = cuts
        self.guard = guard
        self.router = router
        self.threshold = threshold_mb << 20

    async def run(self) -> None:
        """Respond to each cut, until cancelled."""
        while True:
            self.respond(await self.cuts.get())

    def respond(self, cut: Cut) -> None:
        """A cut that freed less than half the threshold was a bystander's (memory grew for another reason)."""
        if cut.freed < self.threshold // 2 or cut.uid is None:
            return
        # The user is stopped: their connections go too (a stolen key's included, which then cannot come back).
        # Not in user mode, where every worker, the auth pool's too, is the broker's own uid.
        if self.router.connection_cut(cut.uid) and cut.uid != os.geteuid():
            self.guard.cut_owner(cut.uid)

"""A kernel in a Slurm job as the provisioner waits for it: Slurm's state and reason logged once per change,
a queue timeout after which the job is cancelled, and a shutdown meanwhile that cancels it (``scancel``).

The start request is answered only once the kernel runs; meanwhile the user's ``kernel_state`` events say
why it waits (followed with ``ssd.client.startwatch``, as ``ssd-ctl start --slurm`` does).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ssd.client import AsyncClient
from ssd.client.kernels import START_TIMEOUT
from ssd.client.startwatch import EventFeed, StartedKernel, kernel_events
from ssd.errors import ErrorCode, SSDError
from ssd.replies import KernelStartReply

__all__ = ["QueueWait", "queue_line"]

NO_LIMIT = 7 * 24 * 3600.0  # a queue_timeout of 0: wait as long as Slurm holds the job (a week at most)
CANCEL_WAIT = 60.0  # seconds a shutdown waits for a cancelled start to have its job cancelled (scancel, then squeue)

Log = logging.Logger | logging.LoggerAdapter[Any]
Start = Callable[[str, float], Awaitable[KernelStartReply]]  # the kernel_start call, given its token and timeout


def queue_line(event: dict[str, Any]) -> str | None:
    """What a kernel_state event of a job says to the notebook's log (None: nothing to say)."""
    job = f"job {event['job_id']}" if event.get("job_id") else "its job"
    if event.get("state") == "queued":
        slurm = f" (Slurm: {event['slurm_state']})" if event.get("slurm_state") else ""
        return f"queued in Slurm: {job}, {event.get('reason') or 'waiting'}{slurm}"
    if event.get("state") == "starting" and event.get("node"):
        return f"{job} runs on {event['node']}: the kernel is starting"
    return None


class QueueWait:
    """The wait of one start in a Slurm job: which kernel it made, and what was last logged of it."""

    def __init__(self, host: str, timeout: float, log: Log) -> None:
        self.host, self.timeout, self.log = host, timeout, log
        self.kernel = StartedKernel.new()  # this start's kernel, told by its token
        self.waiting = False  # while run() runs: a shutdown meanwhile cancels it (SSDProvisioner.cleanup)
        self._said = ""
        self._ended = asyncio.Event()  # run() returned or raised, after any cancel of the job

    async def run(self, client: AsyncClient, start: Start) -> KernelStartReply:
        """Run *start* while following its kernel's events; past the queue timeout cancel the job and raise."""
        self.waiting = True
        self.kernel = StartedKernel.new()
        try:
            async with kernel_events(client) as feed:
                return await self._follow(client, feed, start)
        finally:
            self.waiting = False
            self._ended.set()

    async def _follow(self, client: AsyncClient, feed: EventFeed, start: Start) -> KernelStartReply:
        """Ask for the start and log its kernel's changes until it is answered or the queue timeout passed."""
        loop = asyncio.get_running_loop()
        limit = self.timeout or NO_LIMIT
        deadline = loop.time() + limit
        starting = asyncio.ensure_future(start(self.kernel.token, limit + START_TIMEOUT))
        try:
            while not starting.done() and (left := deadline - loop.time()) > 0:
                event = await feed.wait(starting, left)
                if event is not None and self.kernel.take(event):
                    self._note()
            if not starting.done():
                starting.cancel()
                await self.cancel(client)
                raise self._timed_out()
            return starting.result()
        except asyncio.CancelledError:  # the start was cancelled (a shutdown meanwhile, jupyter console's Ctrl-C)
            starting.cancel()
            try:
                await self.cancel(client)
            except SSDError as exc:
                self.log.warning("ssd-provisioner: %s", exc.message)
            raise

    async def ended(self) -> None:
        """Until run() has ended (SSDProvisioner.cleanup, after it cancelled the start); bounded by CANCEL_WAIT."""
        try:
            await asyncio.wait_for(self._ended.wait(), CANCEL_WAIT)
        except TimeoutError:
            self.log.warning(
                "ssd-provisioner: the cancelled start on %s did not end within %g s; check with: ssd-ctl kernels %s",
                *(self.host, CANCEL_WAIT, self.host),
            )

    def _note(self) -> None:
        """Log a change of this start's kernel's state or Slurm's reason (once per change, not per event)."""
        line = queue_line(self.kernel.state)
        if line is not None and line != self._said:
            self._said = line
            self.log.info("ssd-provisioner: kernel on %s %s", self.host, line)

    def _job(self) -> str:
        return f"job {self.kernel.state['job_id']}" if self.kernel.state.get("job_id") else "its job"

    def _timed_out(self) -> SSDError:
        reason = self.kernel.state.get("reason") or "waiting"
        return SSDError(
            f"{self._job()} was still queued after {self.timeout:g} s ({reason}); it was cancelled. "
            "Wait longer with the kernelspec's queue_timeout, or ask for less (ssd-ctl kernelspec install "
            f"{self.host} ENV --slurm --time ... --cpus ...)",
            code=ErrorCode.KERNEL_START_FAILED,
        )

    async def cancel(self, client: AsyncClient) -> None:
        """Shut down the kernel of this start (``scancel`` of its job), on a timeout or a cancelled start; a start
        that made none yet is left to fail. A kernel the host could not shut down raises, naming the command."""
        kernel_id = await self.kernel.find(client)
        if not kernel_id:
            self.log.warning(
                "ssd-provisioner: a start in a Slurm job on %s ended before its kernel was known; "
                "check with: ssd-ctl kernels %s",
                self.host,
                self.host,
            )
            return
        try:
            await client.kernel_shutdown(kernel_id)
        except SSDError as exc:
            # not found: gone already; busy: already stopping there. Anything else leaves the job queued.
            if exc.code not in (ErrorCode.KERNEL_NOT_FOUND, ErrorCode.KERNEL_BUSY):
                raise SSDError(
                    f"the kernel's Slurm job on {self.host} could not be cancelled ({exc.message}); "
                    f"stop it with: ssd-ctl stop {self.host} {kernel_id}",
                    code=ErrorCode.KERNEL_START_FAILED,
                ) from None
        self.log.info(
            "ssd-provisioner: cancelled the kernel's start on %s: %s removed from Slurm's queue", self.host, self._job()
        )

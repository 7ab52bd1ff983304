"""A kernel in a Slurm job as the provisioner waits for it: Slurm's state and reason logged once per change,
a queue timeout after which the job is cancelled, and a shutdown meanwhile that cancels it (``scancel``).

The start request is answered only once the kernel runs; meanwhile the user's ``kernel_state`` events say
why it waits. The events of this start's kernel are told from others by the kernel list taken before (a
kernel not listed then, of the kind asked for), as ``ssd-ctl start --slurm`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ssd.client import AsyncClient
from ssd.client.connection import Event
from ssd.client.kernels import START_TIMEOUT
from ssd.errors import ErrorCode, SSDError
from ssd.replies import KernelStartReply
from ssd.topics import KERNEL, user_topic

__all__ = ["QueueWait", "queue_line"]

NO_LIMIT = 7 * 24 * 3600.0  # a queue_timeout of 0: wait as long as Slurm holds the job (a week at most)
CANCEL_WAIT = 60.0  # seconds a shutdown waits for a cancelled start to have its job cancelled (scancel, then squeue)
_SUBSCRIBED = 0.3  # seconds for the events subscription to reach the server before the start is asked

Log = logging.Logger | logging.LoggerAdapter[Any]
Start = Callable[[float], Awaitable[KernelStartReply]]  # the kernel_start call, given its timeout


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

    def __init__(self, host: str, kind: str, timeout: float, log: Log) -> None:
        self.host, self.kind, self.timeout, self.log = host, kind, timeout, log
        self.kernel: dict[str, Any] = {}  # the last kernel_state event of this start's kernel
        self.known: set[str] | None = None  # the user's kernels before the start (None: not asked yet)
        self.waiting = False  # between the start request and its answer
        self._said = ""
        self._ended = asyncio.Event()  # run() returned or raised, after any cancel of the job

    async def run(self, client: AsyncClient, start: Start) -> KernelStartReply:
        """Run *start* while following its kernel's events; past the queue timeout cancel the job and raise."""
        user = (await client.whoami()).user
        self.known = {kernel.kernel_id for kernel in await client.kernel_list()}
        events = client.events((user_topic(KERNEL, user),))
        pending: asyncio.Future[Event] = asyncio.ensure_future(anext(events))
        await asyncio.sleep(_SUBSCRIBED)
        limit = self.timeout or NO_LIMIT
        starting = asyncio.ensure_future(start(limit + START_TIMEOUT))
        self.waiting = True
        try:
            pending = await self._follow(events, starting, pending, asyncio.get_running_loop().time() + limit)
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
        finally:
            self.waiting = False
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending  # the generator must be idle before it can be closed
            await events.aclose()
            self._ended.set()

    async def ended(self) -> None:
        """Until run() has ended (SSDProvisioner.cleanup, after it cancelled the start); bounded by CANCEL_WAIT."""
        try:
            await asyncio.wait_for(self._ended.wait(), CANCEL_WAIT)
        except TimeoutError:
            self.log.warning(
                "ssd-provisioner: the cancelled start on %s did not end within %g s; check with: ssd-ctl kernels %s",
                *(self.host, CANCEL_WAIT, self.host),
            )

    async def _follow(
        self,
        events: AsyncIterator[Event],
        starting: asyncio.Future[KernelStartReply],
        pending: asyncio.Future[Event],
        deadline: float,
    ) -> asyncio.Future[Event]:
        """Note this start's events until it is answered or *deadline* (loop time) passed; the events' future."""
        loop = asyncio.get_running_loop()
        while not starting.done() and (left := deadline - loop.time()) > 0:
            either: set[asyncio.Future[Any]] = {starting, pending}
            await asyncio.wait(either, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            if pending.done():
                if pending.cancelled() or pending.exception() is not None:
                    pending = loop.create_future()  # no more events: the start's answer still comes
                    continue
                self._note(pending.result())
                pending = asyncio.ensure_future(anext(events))
        return pending

    def _note(self, event: Event) -> None:
        """Log a change of this start's kernel's state or Slurm's reason (once per change, not per event)."""
        content = event.content
        if event.msg_type != "kernel_state" or self.known is None or content.get("kernel_id") in self.known:
            return
        if self.kernel.get("kernel_id", content.get("kernel_id")) != content.get("kernel_id"):
            return
        if not self.kernel and content.get("kind") != self.kind:
            return
        self.kernel = content
        line = queue_line(content)
        if line is not None and line != self._said:
            self._said = line
            self.log.info("ssd-provisioner: kernel on %s %s", self.host, line)

    def _timed_out(self) -> SSDError:
        job = f"job {self.kernel['job_id']}" if self.kernel.get("job_id") else "the kernel's job"
        reason = self.kernel.get("reason") or "waiting"
        return SSDError(
            f"{job} was still queued after {self.timeout:g} s ({reason}); it was cancelled. "
            "Wait longer with the kernelspec's queue_timeout, or ask for less (ssd-ctl kernelspec install "
            f"{self.host} ENV --slurm --time ... --cpus ...)",
            code=ErrorCode.KERNEL_START_FAILED,
        )

    async def cancel(self, client: AsyncClient) -> None:
        """Shut down the kernel of this start (``scancel`` of its job), on a timeout or a cancelled start; a start
        that made none yet is left to fail. A kernel the host could not shut down raises, naming the command."""
        kernel_id = self.kernel.get("kernel_id") or await self._new_kernel(client)
        if not kernel_id:
            self.log.warning(
                "ssd-provisioner: a start in a Slurm job on %s ended before its kernel was known; "
                "check with: ssd-ctl kernels %s",
                self.host,
                self.host,
            )
            return
        try:
            await client.kernel_shutdown(str(kernel_id))
        except SSDError as exc:
            # not found: gone already; busy: already stopping there. Anything else leaves the job queued.
            if exc.code not in (ErrorCode.KERNEL_NOT_FOUND, ErrorCode.KERNEL_BUSY):
                raise SSDError(
                    f"the kernel's Slurm job on {self.host} could not be cancelled ({exc.message}); "
                    f"stop it with: ssd-ctl stop {self.host} {kernel_id}",
                    code=ErrorCode.KERNEL_START_FAILED,
                ) from None
        job = f"job {self.kernel['job_id']}" if self.kernel.get("job_id") else "its job"
        self.log.info(
            "ssd-provisioner: cancelled the kernel's start on %s: %s removed from Slurm's queue", self.host, job
        )

    async def _new_kernel(self, client: AsyncClient) -> str:
        """This start's kernel when no event named it yet: the one new kernel of its kind, if one."""
        if self.known is None:
            return ""
        new = [k for k in await client.kernel_list() if k.kernel_id not in self.known and k.kind == self.kind]
        return new[0].kernel_id if len(new) == 1 else ""

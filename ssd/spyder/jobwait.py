"""A console's kernel in a Slurm job, from the plugin's network loop: the wait while queued, Cancel, its end.

The start request is answered only once the kernel is ready, which may be hours while Slurm holds the
job. Meanwhile the user's ``kernel_state`` events say why (``ssd.client.startwatch``, as for ``ssd-ctl start``):
``JobStart.follow`` hands those of the kernel its start made to a callback. Cancel shuts that kernel
down, which for a queued kernel is ``scancel`` of its job; the start is then answered with an error.
``watch_ends`` follows the events of kernels already open in consoles, so that a job's end (its time
limit, ``scancel``) reaches the console with Slurm's reason.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from ssd.client import AsyncClient
from ssd.client.connection import Event
from ssd.client.startwatch import StartedKernel, kernel_events
from ssd.replies import KernelStartReply
from ssd.spyder.models import JobState
from ssd.spyder.rows import job_state
from ssd.topics import KERNEL, user_topic

__all__ = ["JobStart", "watch_ends"]


class JobStart:
    """One start in a Slurm job: its options, the kernel it made (once an event names it), and Cancel."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options  # partition, time, cpus, mem, gpus as the user gave them (the host checks them)
        self.kernel_id = ""
        self.job_id: int | None = None
        self.cancelled = False
        self._started = StartedKernel.new()
        self._client: AsyncClient | None = None

    async def follow(
        self,
        client: AsyncClient,
        start: Callable[[str], Awaitable[KernelStartReply]],
        on_kernel: Callable[[str], None],
        on_state: Callable[[JobState], None],
    ) -> KernelStartReply:
        """Run *start* while following its kernel's events: *on_kernel* hears the kernel's id once known,
        *on_state* each of its states (both called in the loop)."""
        self._client = client
        self._started = StartedKernel.new()
        async with kernel_events(client) as feed:
            starting = asyncio.ensure_future(start(self._started.token))
            try:
                while not starting.done():
                    event = await feed.wait(starting)
                    if event is not None and self._started.take(event):
                        await self._take(on_kernel, on_state)
                return starting.result()
            finally:
                starting.cancel()

    async def _take(self, on_kernel: Callable[[str], None], on_state: Callable[[JobState], None]) -> None:
        """An event of this start's kernel: its id passed on the first time, then its state."""
        if not self.kernel_id:
            self.kernel_id = self._started.kernel_id
            on_kernel(self.kernel_id)
            if self.cancelled:  # Cancel came before the host named the kernel
                await self._shutdown()
        state = job_state(self._started.state)
        self.job_id = state.job_id or self.job_id
        on_state(state)

    async def cancel(self) -> str:
        """Cancel the start: shut its kernel down (scancel of a queued job); answers the kernel id ("": not yet)."""
        self.cancelled = True
        if not self.kernel_id and self._client is not None and await self._started.find(self._client):
            self.kernel_id, self.job_id = self._started.kernel_id, self._started.state.get("job_id")
        if self.kernel_id:
            await self._shutdown()
        return self.kernel_id

    async def _shutdown(self) -> None:
        assert self._client is not None
        await self._client.kernel_shutdown(self.kernel_id)


@contextlib.asynccontextmanager
async def _kernel_events(client: AsyncClient) -> AsyncGenerator[AsyncGenerator[Event, None], None]:
    """The user's kernel events, closed at the end."""
    user = (await client.whoami()).user
    events = client.events((user_topic(KERNEL, user),))
    try:
        yield events
    finally:
        await events.aclose()


async def watch_ends(client: AsyncClient, kernel_ids: set[str], on_end: Callable[[JobState], None]) -> None:
    """Until cancelled: each ``dead`` event of a kernel in *kernel_ids* (a live set: consoles come and go)."""
    async with _kernel_events(client) as events:
        async for event in events:
            content = event.content
            ended = event.msg_type == "kernel_state" and content.get("state") == "dead"
            if ended and content.get("kernel_id") in kernel_ids:
                on_end(job_state(content))

"""Following a kernel start that may wait long (a kernel in a Slurm job): the user's kernel events raced
against the start request, and which of them are the started kernel's.

The start request is answered only once the kernel runs; until then its ``kernel_state`` events say why it
waits. They are told from those of the user's other kernels by the kernel list taken before the start: the
first kernel not listed then, of the kind asked for, is the start's. Used by ``ssd-ctl start --slurm``
(``ssd.ctl.slurmwait``), the Jupyter provisioner (``ssd.provisioner.slurmqueue``) and the Spyder plugin
(``ssd.spyder.jobwait``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from ssd.client.connection import AsyncClient, Event, until_subscribed
from ssd.topics import KERNEL, user_topic

__all__ = ["EventFeed", "StartedKernel", "kernel_events"]


class EventFeed:
    """A subscription's events one at a time, each raced against another future (the start request)."""

    def __init__(self, events: AsyncGenerator[Event, None]) -> None:
        self._events = events
        self._next: asyncio.Future[Event] = asyncio.ensure_future(anext(events))

    async def wait(self, other: asyncio.Future[Any], timeout: float | None = None) -> Event | None:
        """The next event; None if *other* ended or *timeout* passed first (the event is then kept for later)."""
        await asyncio.wait({other, self._next}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if not self._next.done():
            return None
        if self._next.cancelled() or self._next.exception() is not None:
            self._next = asyncio.get_running_loop().create_future()  # the subscription ended: no more events
            return None
        event, self._next = self._next.result(), asyncio.ensure_future(anext(self._events))
        return event

    async def aclose(self) -> None:
        """Stop reading and close the subscription."""
        self._next.cancel()
        with contextlib.suppress(BaseException):
            await self._next  # the generator must be idle before it can be closed
        await self._events.aclose()


@contextlib.asynccontextmanager
async def kernel_events(client: AsyncClient) -> AsyncIterator[EventFeed]:
    """The user's kernel events from now on (subscribed before it yields), closed at the end."""
    user = (await client.whoami()).user
    subscribed = asyncio.Event()
    feed = EventFeed(client.events((user_topic(KERNEL, user),), subscribed=subscribed))
    try:
        await until_subscribed(subscribed)
        yield feed
    finally:
        await feed.aclose()


class StartedKernel:
    """The kernel a start made: the first kernel of its kind that the list taken before the start lacked."""

    def __init__(self, known: set[str], kind: str) -> None:
        self.known, self.kind = known, kind
        self.state: dict[str, Any] = {}  # its last kernel_state event (or what the kernel list said of it)

    @classmethod
    async def before(cls, client: AsyncClient, kind: str) -> StartedKernel:
        """Called just before the start: the user's kernels then."""
        return cls({kernel.kernel_id for kernel in await client.kernel_list()}, kind)

    @property
    def kernel_id(self) -> str:
        """Its id ("" while no event named it)."""
        return str(self.state.get("kernel_id") or "")

    def take(self, event: Event) -> bool:
        """Whether *event* is a kernel_state event of this start's kernel (then remembered as its state)."""
        content = event.content
        kernel_id = str(content.get("kernel_id") or "")
        if event.msg_type != "kernel_state" or not kernel_id or kernel_id in self.known:
            return False
        if kernel_id != (self.kernel_id or kernel_id) or (not self.kernel_id and content.get("kind") != self.kind):
            return False
        self.state = content
        return True

    async def find(self, client: AsyncClient) -> str:
        """Its id, from the kernel list when no event named it yet ("" unless exactly one new kernel of its kind)."""
        if not self.kernel_id:
            new = [k for k in await client.kernel_list() if k.kernel_id not in self.known and k.kind == self.kind]
            if len(new) == 1:
                self.state = {"kernel_id": new[0].kernel_id, "job_id": new[0].job_id}
        return self.kernel_id

"""Following a kernel start that may wait long (a kernel in a Slurm job): the user's kernel events raced
against the start request, and which of them are the started kernel's.

The start request is answered only once the kernel runs; until then its ``kernel_state`` events say why it
waits. They are told from those of the user's other kernels, and of other starts at the same moment, by the
start's token, which the host echoes in them (kernel_start's ``start_token``). Used by ``ssd-ctl start --slurm``
(``ssd.ctl.slurmwait``), the Jupyter provisioner (``ssd.provisioner.slurmqueue``) and the Spyder plugin
(``ssd.spyder.jobwait``).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
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
    """The kernel a start made: the one whose events and list entry carry the start's token."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.state: dict[str, Any] = {}  # its last kernel_state event (or what the kernel list said of it)

    @classmethod
    def new(cls) -> StartedKernel:
        """A start with a fresh token (kernel_start's start_token)."""
        return cls(secrets.token_hex(8))

    @property
    def kernel_id(self) -> str:
        """Its id ("" while no event named it)."""
        return str(self.state.get("kernel_id") or "")

    def take(self, event: Event) -> bool:
        """Whether *event* is a kernel_state event of this start's kernel (then remembered as its state)."""
        if event.msg_type != "kernel_state" or event.content.get("start_token") != self.token:
            return False
        self.state = event.content
        return True

    async def find(self, client: AsyncClient) -> str:
        """Its id, from the kernel list when no event named it yet ("": the host has no kernel of this start)."""
        if not self.kernel_id:
            for kernel in await client.kernel_list():
                if kernel.start_token == self.token:
                    self.state = {"kernel_id": kernel.kernel_id, "job_id": kernel.job_id}
        return self.kernel_id

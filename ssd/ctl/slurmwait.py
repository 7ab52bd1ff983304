"""ssd-ctl start --slurm: the wait for a kernel in a Slurm job, with Slurm's reason; Ctrl-C cancels the job.

The start request is answered only once the kernel is ready, which may be hours while Slurm holds the job.
Meanwhile the user's ``kernel_state`` events say why: the spinner (or, without a terminal, one line per
change on stderr) follows those of the kernel this start made, and Ctrl-C shuts that kernel down, which
for a queued kernel is ``scancel`` of its job.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from ssd.client.connection import AsyncClient
from ssd.client.startwatch import StartedKernel, kernel_events
from ssd.ctl.output import Output
from ssd.replies import KernelStartReply

__all__ = ["describe", "start_in_job"]

Show = Callable[[str], None]


def describe(event: dict[str, Any]) -> str | None:
    """What a kernel_state event of a kernel in a job says to a person (None: nothing to say)."""
    job = f"job {event['job_id']}" if event.get("job_id") else "the job"
    state = event.get("state")
    if state == "queued":
        slurm = f" (Slurm: {event['slurm_state']})" if event.get("slurm_state") else ""
        return f"queued: {job}, {event.get('reason') or 'waiting'}{slurm}"
    if state == "starting" and event.get("node"):
        return f"{job} runs on {event['node']}: starting the kernel"
    return None


@contextlib.contextmanager
def _display(out: Output, text: str) -> Iterator[Show]:
    """A spinner at a terminal; without one a line on stderr per change; nothing with --json."""
    if out.as_json:
        yield lambda line: None
    elif out.err.is_terminal:
        with out.err.status(text) as status:
            yield lambda line: status.update(f"{text}\n  {line}")
    else:
        out.err.print(text)
        yield lambda line: out.err.print(f"  {line}")


async def start_in_job(
    client: AsyncClient, out: Output, text: str, start: Callable[[str], Awaitable[KernelStartReply]]
) -> KernelStartReply:
    """Run *start* (given the start's token) while following its kernel's events; Ctrl-C cancels the kernel's
    job, then re-raises."""
    started = StartedKernel.new()
    async with kernel_events(client) as feed:
        starting = asyncio.ensure_future(start(started.token))
        try:
            with _display(out, text) as show:
                while not starting.done():
                    event = await feed.wait(starting)
                    if event is not None and started.take(event) and (line := describe(started.state)) is not None:
                        show(line)
            return starting.result()
        except (KeyboardInterrupt, asyncio.CancelledError):
            starting.cancel()
            await _cancel(client, out, started)
            raise


async def _cancel(client: AsyncClient, out: Output, started: StartedKernel) -> None:
    """Shut down the kernel this start made (scancel of its job) and say so."""
    if not await started.find(client):
        out.error("interrupted before the kernel was submitted; check with: ssd-ctl kernels")
        return
    job = f"job {started.state['job_id']}" if started.state.get("job_id") else "its job"
    await client.kernel_shutdown(started.kernel_id)
    out.error(f"cancelled the start: {job} removed from Slurm's queue (scancel)")

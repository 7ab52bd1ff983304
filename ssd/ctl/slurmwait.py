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

from ssd.client.connection import AsyncClient, Event
from ssd.ctl.output import Output
from ssd.replies import KernelStartReply
from ssd.topics import KERNEL, user_topic

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


def _ours(event: Event, known: set[str], kind: str, kernel_id: str | None) -> bool:
    """An event of the kernel this start made: a kernel not there before, of the kind asked for."""
    content = event.content
    if event.msg_type != "kernel_state" or content.get("kernel_id") in known:
        return False
    return content.get("kernel_id") == kernel_id if kernel_id else content.get("kind") == kind


async def start_in_job(
    client: AsyncClient, out: Output, text: str, kind: str, start: Callable[[], Awaitable[KernelStartReply]]
) -> KernelStartReply:
    """Run *start* while following its kernel's events; Ctrl-C cancels the kernel's job, then re-raises."""
    user = (await client.whoami()).user
    known = {kernel.kernel_id for kernel in await client.kernel_list()}
    events = client.events((user_topic(KERNEL, user),))
    pending: asyncio.Future[Event] = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0.3)  # let the subscription reach the server before the first event
    starting = asyncio.ensure_future(start())
    kernel: dict[str, Any] = {}
    try:
        with _display(out, text) as show:
            while not starting.done():
                either: set[asyncio.Future[Any]] = {starting, pending}
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                if not pending.done():
                    continue
                event, pending = pending.result(), asyncio.ensure_future(anext(events))
                if _ours(event, known, kind, kernel.get("kernel_id")):
                    kernel = event.content
                    line = describe(kernel)
                    if line is not None:
                        show(line)
        return starting.result()
    except (KeyboardInterrupt, asyncio.CancelledError):
        starting.cancel()
        await _cancel(client, out, kernel or await _new_kernel(client, known, kind))
        raise
    finally:
        pending.cancel()
        with contextlib.suppress(BaseException):
            await pending  # the generator must be idle before it can be closed
        await events.aclose()


async def _new_kernel(client: AsyncClient, known: set[str], kind: str) -> dict[str, Any]:
    """The kernel this start made when no event named it yet: the one new kernel of its kind, if one."""
    new = [k for k in await client.kernel_list() if k.kernel_id not in known and k.kind == kind]
    return {"kernel_id": new[0].kernel_id, "job_id": new[0].job_id} if len(new) == 1 else {}


async def _cancel(client: AsyncClient, out: Output, kernel: dict[str, Any]) -> None:
    """Shut down the kernel this start made (scancel of its job) and say so."""
    if not kernel:
        out.error("interrupted before the kernel was submitted; check with: ssd-ctl kernels")
        return
    job = f"job {kernel['job_id']}" if kernel.get("job_id") else "its job"
    await client.kernel_shutdown(str(kernel["kernel_id"]))
    out.error(f"cancelled the start: {job} removed from Slurm's queue (scancel)")

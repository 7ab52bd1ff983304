"""The diagnostic service: an echo that travels the whole worker path.

``ssd-ctl ping HOST --worker`` uses it to measure a worker-routed round trip,
and tests use its ``delay`` to hold a request while a worker is killed. It
runs only when ``[workers] diag = true``.
"""

from __future__ import annotations

import asyncio
import os

from ssd import contract
from ssd.messages import EchoRequest
from ssd.replies import EchoReply
from ssd.workers import wire
from ssd.workers.base import Worker

__all__ = ["DiagWorker"]


async def echo(worker: Worker, content: EchoRequest, request: wire.Request) -> EchoReply:
    """Return the data after the requested delay, with this worker's pid."""
    if content.delay:
        await asyncio.sleep(content.delay)
    return EchoReply(data=content.data, pid=os.getpid())


class DiagWorker(Worker):
    """Serves ``echo_request``."""

    service = "diag"
    capacity = 1024  # echo only sleeps; let many keys share it
    handlers = {contract.ECHO.msg_type: echo}

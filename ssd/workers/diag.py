"""The diagnostic service: an echo that travels the whole worker path.

``ssd-ctl ping HOST --worker`` uses it to measure a worker-routed round trip,
and tests use its ``delay`` to hold a request while a worker is killed. It
runs only when ``[workers] diag = true``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from ssd.messages import EchoRequest
from ssd.workers import wire
from ssd.workers.base import Worker

__all__ = ["DiagWorker"]


async def echo(worker: Worker, content: EchoRequest, request: wire.Request) -> dict[str, Any]:
    """Return the data after the requested delay, with this worker's pid."""
    if content.delay:
        await asyncio.sleep(content.delay)
    return {"status": "ok", "data": content.data, "pid": os.getpid()}


class DiagWorker(Worker):
    """Serves ``echo_request``."""

    service = "diag"
    capacity = 1024  # echo only sleeps; let many keys share it
    routes = {"echo_request": (EchoRequest, echo)}

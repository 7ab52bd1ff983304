"""Entry point of a worker process: ``python -m ssd.workers``, credentials on stdin.

Only the broker's supervisor starts workers; a person running this by hand
has no credentials the broker accepts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import sys

import msgspec

from ssd.workers import wire
from ssd.workers.auth import AuthWorker
from ssd.workers.base import Worker
from ssd.workers.diag import DiagWorker
from ssd.workers.env import EnvWorker
from ssd.workers.kernel import KernelWorker

SERVICES: dict[str, type[Worker]] = {"auth": AuthWorker, "diag": DiagWorker, "env": EnvWorker, "kernel": KernelWorker}


def limit_address_space() -> None:
    """Lower this process's hard RLIMIT_AS as the broker asks (it checks before it sends credentials)."""
    limit = os.environ.pop(wire.ADDRESS_SPACE_VARIABLE, "")
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit)))


def main() -> int:
    """Read credentials, pick the service's worker class, run it."""
    limit_address_space()
    try:
        credentials = wire.decode(sys.stdin.buffer.readline(), wire.Credentials)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        print(
            f"ssd worker: no valid credentials on stdin ({exc}); workers are started by the ssd daemon", file=sys.stderr
        )
        return 2
    logging.basicConfig(
        level=credentials.log_level.upper(),
        format=f"ssd[{credentials.service} worker] %(levelname)s %(name)s: %(message)s",
    )
    worker_class = SERVICES.get(credentials.service)
    if worker_class is None:
        logging.error("unknown service %r", credentials.service)
        return 2
    return asyncio.run(worker_class(credentials).run())


if __name__ == "__main__":
    sys.exit(main())

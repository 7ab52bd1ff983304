"""Entry point of the edge: ``python -I -m ssd.edge``, credentials on stdin (see ``ssd.edge``).

Only the broker starts it; a person running this by hand has no credentials.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import resource
import sys

import msgspec

from ssd.edge.link import EdgeCredentials
from ssd.edge.process import Edge

_PR_SET_DUMPABLE = 4


def _not_dumpable() -> None:
    """No core dump and no ptrace by other processes of our (shared, unprivileged) account: we hold the server key."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE) failed")


def main() -> int:
    """Protect ourselves, read credentials, limit our data size, serve."""
    _not_dumpable()
    try:
        credentials = msgspec.json.decode(sys.stdin.buffer.readline(), type=EdgeCredentials)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        print(
            f"ssd edge: no valid credentials on stdin ({exc}); the edge is started by the ssd daemon", file=sys.stderr
        )
        return 2
    logging.basicConfig(level=credentials.log_level.upper(), format="ssd[edge] %(levelname)s %(name)s: %(message)s")
    # Before any socket exists: past this libzmq's allocations fail and it aborts; the broker starts a new edge.
    resource.setrlimit(resource.RLIMIT_DATA, (credentials.memory_limit, credentials.memory_limit))
    return asyncio.run(Edge(credentials).run())


if __name__ == "__main__":
    sys.exit(main())

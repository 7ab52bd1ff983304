"""Print a server's name, load and memory with the ssd client library.

Usage: python examples/server_status.py HOST   (pin the key first: ssd-ctl trust HOST)
"""

from __future__ import annotations

import sys

from ssd.client import Client
from ssd.errors import SSDError


def main() -> int:
    """Connect, ask server_info, print a line."""
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        with Client(sys.argv[1]) as server:
            info = server.server_info()
    except SSDError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    free = info.memory_available / 2**30
    print(f"{info.name}: load {info.load[0]}, {free:.1f} GiB free, {info.cpus} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())

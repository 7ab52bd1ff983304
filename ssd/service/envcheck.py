"""``python -m ssd.service.envcheck``: list the environments one user has, as that user (for ``ssd doctor``).

It reads the ``[envs]`` options as JSON on stdin and prints the environments
as a JSON list, using the same discovery as the user's env worker.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import msgspec

from ssd.envs import discover, discovery_options

__all__ = ["main"]


def main() -> int:
    """Discover with the options on stdin and print the result."""
    envs = msgspec.json.decode(sys.stdin.buffer.read() or b"{}")
    options = discovery_options(envs)
    found = discover(options, Path(os.environ.get("HOME", "~")).expanduser(), dict(os.environ))
    sys.stdout.buffer.write(msgspec.json.encode(found) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

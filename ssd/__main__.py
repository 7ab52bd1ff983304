"""``python -m ssd`` runs the daemon, as ``ssd run`` does."""

from __future__ import annotations

import sys

from ssd.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))

"""No module is ever imported from the directory a process was started in.

``python -m`` puts the current directory first on ``sys.path``: a worker
started that way from a user-writable directory (or a user's home) runs
whatever ``ssd/__init__.py`` or ``zmq/__init__.py`` lies there. Every Python
helper ssd starts runs as ``python -I`` (no cwd, no ``PYTHON*`` variables, no
user site-packages) in a cwd chosen before exec; the daemon drops the current
directory from its own ``sys.path`` before it imports anything lazily.
"""

from __future__ import annotations

import os
import sys

__all__ = ["SAFE_CWD", "drop_cwd_from_sys_path", "python_module"]

SAFE_CWD = "/"  # root's helpers start here; per-user ones start in the user's home


def python_module(module: str, *args: str) -> list[str]:
    """The argv that runs ``python -I -m MODULE ARGS`` with this very interpreter."""
    return [sys.executable, "-I", "-m", module, *args]


def drop_cwd_from_sys_path() -> list[str]:
    """Remove ``''`` and the current directory from ``sys.path`` (``python -m ssd`` puts it first); return them.

    ``ssd``'s main() calls it first: modules already imported stay, later imports never look in the cwd.
    """
    try:
        here = os.path.realpath(os.getcwd())
    except OSError:  # cwd removed under us: only '' can point at it
        here = None
    unsafe = [entry for entry in sys.path if entry in ("", ".") or os.path.realpath(entry) == here]
    sys.path[:] = [entry for entry in sys.path if entry not in unsafe]
    return unsafe

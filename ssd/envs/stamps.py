"""Modification-time stamps and a cache that reloads a path only when its stamp changes."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

__all__ = ["Stamp", "StampCache", "stamp"]

T = TypeVar("T")

# (mtime_ns, size, inode, device), or None for a path that is missing or unreadable.
Stamp = tuple[int, int, int, int] | None


def stamp(path: Path | str) -> Stamp:
    """The stamp of *path* now (one ``stat``); None when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


class StampCache(Generic[T]):
    """Values loaded from paths, kept while the path's stamp is unchanged."""

    def __init__(self, loader: Callable[[Path], T]) -> None:
        self._loader = loader
        self._entries: dict[Path, tuple[Stamp, T]] = {}

    def get(self, path: Path) -> T:
        """The value for *path*, loaded again only when its stamp changed since the last call."""
        current = stamp(path)
        entry = self._entries.get(path)
        if entry is not None and entry[0] == current:
            return entry[1]
        value = self._loader(path)
        self._entries[path] = (current, value)
        return value

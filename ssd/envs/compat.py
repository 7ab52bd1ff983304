"""Which Spyder versions a given spyder-kernels version can serve: the one compatibility table.

Spyder pins the spyder-kernels series it talks to in
``spyder/plugins/ipythonconsole/__init__.py`` (``SPYDER_KERNELS_MIN_VERSION`` /
``SPYDER_KERNELS_MAX_VERSION``, e.g. 6.0.x: ``>=3.0.0,<3.1.0``; 5.5.x: ``>=2.5.0,<2.6.0``)
and, before 5.x, in ``spyder/dependencies.py`` (``SPYDER_KERNELS_REQVER``, e.g. 4.1.x:
``>=1.9.2;<1.10.0``). Spyder's FAQ "Using existing environment" shows the same
table to users. Add a row here when a new Spyder minor series ships.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["COMPATIBILITY", "KernelsSeries", "kernels_spec_for", "parse_version", "spyder_versions"]

Version = tuple[int, ...]


class KernelsSeries(NamedTuple):
    """A spyder-kernels range ``[minimum, below)`` and the Spyder series that accepts it."""

    minimum: Version
    below: Version
    spyder: str


# Newest first. Spyder series -> the spyder-kernels range that series requires.
COMPATIBILITY: tuple[KernelsSeries, ...] = (
    KernelsSeries((3, 1, 0), (3, 2, 0), "6.1.x"),
    KernelsSeries((3, 0, 0), (3, 1, 0), "6.0.x"),
    KernelsSeries((2, 5, 0), (2, 6, 0), "5.5.x"),
    KernelsSeries((2, 4, 0), (2, 5, 0), "5.4.x"),
    KernelsSeries((2, 3, 0), (2, 4, 0), "5.3.x"),
    KernelsSeries((2, 2, 0), (2, 3, 0), "5.2.x"),
    KernelsSeries((2, 1, 0), (2, 2, 0), "5.1.x"),
    KernelsSeries((2, 0, 1), (2, 1, 0), "5.0.x"),
    KernelsSeries((1, 10, 0), (1, 11, 0), "4.2.x"),
    KernelsSeries((1, 9, 2), (1, 10, 0), "4.1.x"),
)

_RELEASE = re.compile(r"\s*v?(\d+(?:\.\d+)*)")


def parse_version(text: str) -> Version | None:
    """The numeric release part of a version string (``3.1.0b2`` -> (3, 1, 0)); None if there is none."""
    match = _RELEASE.match(text)
    if match is None:
        return None
    return tuple(int(part) for part in match.group(1).split("."))


def _padded(version: Version) -> Version:
    return (*version, 0, 0, 0)[:3]


def spyder_versions(kernels_version: str | None) -> list[str]:
    """The Spyder series (``["6.1.x"]``) that can use an installed spyder-kernels; empty when none."""
    if not kernels_version:
        return []
    parsed = parse_version(kernels_version)
    if parsed is None:
        return []
    version = _padded(parsed)
    return [row.spyder for row in COMPATIBILITY if row.minimum <= version < row.below]


def kernels_spec_for(spyder_version: str) -> str | None:
    """The requirement spec (``spyder-kernels>=3.1.0,<3.2.0``) matching a Spyder version; None if unknown."""
    parsed = parse_version(spyder_version)
    if parsed is None or len(parsed) < 2:
        return None
    series = f"{parsed[0]}.{parsed[1]}.x"
    for row in COMPATIBILITY:
        if row.spyder == series:
            low, high = (".".join(map(str, v)) for v in (row.minimum, row.below))
            return f"spyder-kernels>={low},<{high}"
    return None

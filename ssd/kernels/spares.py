"""The spare-kernel pool of one user: pure bookkeeping, no processes (the kernel worker acts on it).

After a start in an (environment, kind), the user's kernel worker keeps spares
of that pair started the same way (same variables and working folder), ready
for the next matching ``kernel_start``. This module decides which spare a start
may take, how many to start, and which to stop: the template changed, no
matching start within ``spare_idle``, or the environment changed on disk. The
clock is injected, so tests drive time.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from ssd.envs.stamps import Stamp, stamp

__all__ = ["EnvStamp", "Spare", "SpareKey", "SparePool", "env_stamp", "spares_wanted"]

# The stamps of the folders a package install or removal changes: conda-meta and every site-packages.
EnvStamp = tuple[Stamp, ...]


def env_stamp(prefix: str) -> EnvStamp:
    """What tells an environment's installed packages apart on disk (a few ``stat`` calls)."""
    folders = [os.path.join(prefix, "conda-meta")]
    folders += sorted(glob.glob(os.path.join(prefix, "lib", "python*", "site-packages")))
    return tuple(stamp(folder) for folder in folders)


class SpareKey(NamedTuple):
    """What a spare serves: an environment (its prefix) and a kernel kind."""

    env: str
    kind: str


@dataclass
class Spare:
    """One spare kernel, as the pool knows it."""

    kernel_id: str
    key: SpareKey
    env_vars: dict[str, str]
    cwd: str
    stamp: EnvStamp
    ready: bool = False


@dataclass
class _Template:
    """How the last start of a key asked for its kernel, and when."""

    env_vars: dict[str, str]
    cwd: str
    used: float


def spares_wanted(host: int, own: int | None) -> int:
    """The spares to keep for one key: the user's own number capped by the host's (the host's by default)."""
    return host if own is None else min(own, host)


class SparePool:
    """The spares of one user, by kernel id, and the template each key refills from."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.spares: dict[str, Spare] = {}
        self._templates: dict[SpareKey, _Template] = {}

    def __len__(self) -> int:
        return len(self.spares)

    def of(self, key: SpareKey) -> list[Spare]:
        """The spares of *key*, starting or ready."""
        return [spare for spare in self.spares.values() if spare.key == key]

    def used(self, key: SpareKey, env_vars: dict[str, str], cwd: str) -> list[str]:
        """A start of *key* happened: it becomes the template; returns the spares started otherwise (to stop)."""
        self._templates[key] = _Template(dict(env_vars), cwd, self.clock())
        return [s.kernel_id for s in self.of(key) if s.env_vars != env_vars]

    def take(self, key: SpareKey, env_vars: dict[str, str], current: EnvStamp) -> Spare | None:
        """A ready spare of *key* started with exactly *env_vars* in the environment as it is now, removed."""
        for spare in self.of(key):
            if spare.ready and spare.env_vars == env_vars and spare.stamp == current:
                return self.spares.pop(spare.kernel_id)
        return None

    def retire_stale(self, key: SpareKey, current: EnvStamp) -> list[str]:
        """Spares of *key* started before the environment became *current*, removed (to stop): a start that
        finds the environment changed is cold, and the refill after it must not count them."""
        stale = [spare.kernel_id for spare in self.of(key) if spare.stamp != current]
        for kernel_id in stale:
            del self.spares[kernel_id]
        return stale

    def add(self, spare: Spare) -> None:
        """A spare is being started."""
        self.spares[spare.kernel_id] = spare

    def mark_ready(self, kernel_id: str) -> None:
        """A spare answered kernel_info."""
        if kernel_id in self.spares:
            self.spares[kernel_id].ready = True

    def remove(self, kernel_id: str) -> Spare | None:
        """Forget a spare (stopped, or dead)."""
        return self.spares.pop(kernel_id, None)

    def missing(self, key: SpareKey, wanted: int, room: int) -> int:
        """How many spares of *key* to start now: up to *wanted*, within *room* left under the user's limit."""
        if key not in self._templates:
            return 0
        return max(0, min(wanted - len(self.of(key)), room))

    def template(self, key: SpareKey) -> tuple[dict[str, str], str] | None:
        """The variables and working folder new spares of *key* start with (None: no start to follow)."""
        found = self._templates.get(key)
        return None if found is None else (dict(found.env_vars), found.cwd)

    def idle(self, spare_idle: float) -> list[str]:
        """Spares of keys without a start for *spare_idle* seconds; those keys are not refilled any more."""
        now = self.clock()
        stale = {key for key, t in self._templates.items() if now - t.used >= spare_idle}
        for key in stale:
            del self._templates[key]
        return [s.kernel_id for s in self.spares.values() if s.key in stale or s.key not in self._templates]

    def outdated(self, current: Callable[[str], EnvStamp]) -> list[str]:
        """Spares whose environment changed on disk since they started (a package installed or removed)."""
        stamps: dict[str, EnvStamp] = {}
        for spare in self.spares.values():
            if spare.key.env not in stamps:
                stamps[spare.key.env] = current(spare.key.env)
        return [s.kernel_id for s in self.spares.values() if s.stamp != stamps[s.key.env]]

    def clear(self) -> list[str]:
        """Stop following every key (the user's sessions ended, or the worker stops): all spares to stop."""
        self._templates.clear()
        return list(self.spares)

"""The env service ("cpp", conda proxy process): one worker per user, running as that user.

It lists the user's environments with exactly the user's rights: what the user
cannot read, it cannot see. Discovery reads metadata on disk (no Python is run
per environment) and is cached by modification times in ``ssd.envs``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import msgspec

from ssd.envs import DiscoveryOptions, EnvDiscovery, EnvInfo
from ssd.errors import SSDError
from ssd.messages import EnvInfoRequest, EnvListRequest
from ssd.workers import wire
from ssd.workers.base import Worker

__all__ = ["EnvWorker", "find_env"]


class EnvWorker(Worker):
    """Serves ``env_list_request`` and ``env_info_request`` for its one user."""

    service = "env"
    capacity = 16

    def __init__(self, credentials: wire.Credentials) -> None:
        super().__init__(credentials)
        options = msgspec.convert(credentials.options.get("discovery", {}), DiscoveryOptions)
        self.discovery = EnvDiscovery(options, Path(os.environ.get("HOME", "~")).expanduser(), dict(os.environ))


def find_env(envs: list[EnvInfo], wanted: str) -> EnvInfo:
    """Pick an environment by prefix, or by a name that only one environment has."""
    by_prefix = [e for e in envs if e.prefix == wanted or e.prefix == os.path.normpath(wanted)]
    if by_prefix:
        return by_prefix[0]
    named = [e for e in envs if e.name == wanted]
    if len(named) == 1:
        return named[0]
    if named:
        prefixes = ", ".join(e.prefix for e in named)
        raise SSDError(f"several environments are named {wanted!r} ({prefixes}); give the prefix", code="env_ambiguous")
    raise SSDError(f"no environment {wanted!r} was found for this user (see: ssd-ctl envs HOST)", code="env_not_found")


async def env_list(worker: EnvWorker, content: EnvListRequest, request: wire.Request) -> dict[str, Any]:
    """Every environment the user can see."""
    envs = await asyncio.to_thread(worker.discovery.list)
    return {"status": "ok", "envs": msgspec.to_builtins(envs)}


async def env_info(worker: EnvWorker, content: EnvInfoRequest, request: wire.Request) -> dict[str, Any]:
    """One environment, by name or prefix."""
    envs = await asyncio.to_thread(worker.discovery.list)
    return {"status": "ok", "env": msgspec.to_builtins(find_env(envs, content.env))}


EnvWorker.routes = {"env_list_request": (EnvListRequest, env_list), "env_info_request": (EnvInfoRequest, env_info)}

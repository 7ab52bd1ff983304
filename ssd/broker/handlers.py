"""Requests the broker answers itself: ``ping`` and ``server_info``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ssd import __version__, hostinfo
from ssd.messages import PingRequest, RequestContent, ServerInfoRequest
from ssd.protocol import PROTOCOL_VERSION

__all__ = ["HANDLERS", "ServerFacts"]


@dataclass(frozen=True)
class ServerFacts:
    """What server_info reports that does not change while the daemon runs."""

    name: str
    mode: str
    fingerprint: str
    public_key: str
    control_port: int
    events_port: int
    key_port: int
    started: float
    capabilities: tuple[str, ...]


def ping(facts: ServerFacts, content: RequestContent) -> dict[str, Any]:
    """Echo the client's data with the server's time."""
    assert isinstance(content, PingRequest)
    return {"status": "ok", "data": content.data, "server_time": time.time()}


def server_info(facts: ServerFacts, content: RequestContent) -> dict[str, Any]:
    """Describe this server: identity, version, mode, capabilities and host status."""
    assert isinstance(content, ServerInfoRequest)
    return {
        "status": "ok",
        "name": facts.name,
        "version": __version__,
        "protocol_version": PROTOCOL_VERSION,
        "mode": facts.mode,
        "capabilities": list(facts.capabilities),
        "fingerprint": facts.fingerprint,
        "public_key": facts.public_key,
        "control_port": facts.control_port,
        "events_port": facts.events_port,
        "key_port": facts.key_port,
        "uptime": round(time.time() - facts.started, 3),
        **hostinfo.host_status(),
    }


Handler = Callable[[ServerFacts, RequestContent], dict[str, Any]]

HANDLERS: dict[str, Handler] = {"ping": ping, "server_info": server_info}

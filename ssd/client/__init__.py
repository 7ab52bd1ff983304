"""The ssd client library: ``AsyncClient`` (asyncio) and its blocking twin ``Client``."""

from __future__ import annotations

from ssd.client.connection import AsyncClient, Event
from ssd.client.hostspec import HostSpec, parse_host
from ssd.client.known_hosts import KnownHosts
from ssd.client.sync import Client

__all__ = ["AsyncClient", "Client", "Event", "HostSpec", "KnownHosts", "parse_host"]

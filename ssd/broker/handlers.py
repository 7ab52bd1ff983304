"""Requests the broker answers itself: ``ping``, ``server_info``, ``logout``, ``whoami``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ssd import __version__, contract, hostinfo
from ssd.broker.sessions import SessionStore
from ssd.messages import LogoutRequest, PingRequest, RequestContent, ServerInfoRequest, WhoamiRequest
from ssd.protocol import PROTOCOL_VERSION
from ssd.replies import LogoutReply, PingReply, Reply, ServerInfoReply, SlurmOffer, WhoamiReply

__all__ = ["HANDLERS", "RequestContext", "ServerFacts"]


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
    kernel_transport: str = "curve"  # curve (encrypted relay) or plain
    placements: tuple[str, ...] = ("local",)  # where kernels may run: local, slurm
    slurm_partitions: tuple[str, ...] = ()  # the partitions users may ask for; empty = any
    slurm: SlurmOffer | None = None  # the [slurm] defaults and limits, when Slurm placement is offered


@dataclass(frozen=True)
class RequestContext:
    """Who asked (the ZAP-reported client key) and the broker state a handler may use."""

    facts: ServerFacts
    client_key: str
    sessions: SessionStore


def ping(ctx: RequestContext, content: RequestContent) -> PingReply:
    """Echo the client's data with the server's time."""
    assert isinstance(content, PingRequest)
    return PingReply(data=content.data, server_time=time.time())


def server_info(ctx: RequestContext, content: RequestContent) -> ServerInfoReply:
    """Describe this server: identity, version, mode, capabilities and host status."""
    assert isinstance(content, ServerInfoRequest)
    facts = ctx.facts
    return ServerInfoReply(
        name=facts.name,
        version=__version__,
        protocol_version=PROTOCOL_VERSION,
        mode=facts.mode,
        capabilities=list(facts.capabilities),
        fingerprint=facts.fingerprint,
        public_key=facts.public_key,
        control_port=facts.control_port,
        events_port=facts.events_port,
        key_port=facts.key_port,
        kernel_transport=facts.kernel_transport,
        placements=list(facts.placements),
        slurm_partitions=list(facts.slurm_partitions),
        slurm=facts.slurm,
        uptime=round(time.time() - facts.started, 3),
        **hostinfo.host_status(),
    )


def logout(ctx: RequestContext, content: RequestContent) -> LogoutReply:
    """End this key's session."""
    assert isinstance(content, LogoutRequest)
    return LogoutReply(ended=ctx.sessions.end(ctx.client_key))


def whoami(ctx: RequestContext, content: RequestContent) -> WhoamiReply:
    """Tell which user this key is bound to and until when."""
    assert isinstance(content, WhoamiRequest)
    session = ctx.sessions.get(ctx.client_key)
    assert session is not None  # the dispatch table requires a bound key
    return WhoamiReply(user=session.user, since=session.created, expires=session.expires)


Handler = Callable[[RequestContext, RequestContent], Reply]

# By msg_type: exactly the registry's types served by the broker (checked here, at import).
HANDLERS: dict[str, Handler] = {
    contract.PING.msg_type: ping,
    contract.SERVER_INFO.msg_type: server_info,
    contract.LOGOUT.msg_type: logout,
    contract.WHOAMI.msg_type: whoami,
}
if set(HANDLERS) != contract.served_by(contract.BROKER):
    raise RuntimeError(f"broker handlers {sorted(HANDLERS)} differ from the registry's broker types")

"""The private link between the broker (ROUTER on 127.0.0.1) and the edge (DEALER), over CURVE.

Only the key the broker made for the running edge is admitted (ZAP domain
``EDGE_DOMAIN``). Every message starts with the tag and a command::

    edge -> broker   [TAG, CLIENT, client key (Z85), peer address, routing id, *message frames]
    broker -> edge   [TAG, REPLY, routing id, *message frames]      (sent on the control ROUTER)
                     [TAG, PUBLISH, topic, *message frames]         (sent on the events PUB)

The edge forwards at most ``MAX_FORWARDED_FRAMES`` frames of a client message,
enough for the broker to see that a message has too many.
"""

from __future__ import annotations

from typing import Final

import msgspec

__all__ = ["CLIENT", "EDGE_DOMAIN", "MAX_FORWARDED_FRAMES", "PUBLISH", "REPLY", "TAG", "EdgeCredentials"]

TAG: Final = b"SSDE1"
CLIENT: Final = b"CLIENT"
REPLY: Final = b"REPLY"
PUBLISH: Final = b"PUB"
EDGE_DOMAIN: Final = "ssd-edge"
# A routing id and a Jupyter message of up to 16 frames, and one more to show there were too many.
MAX_FORWARDED_FRAMES: Final = 18


class EdgeCredentials(msgspec.Struct, frozen=True, kw_only=True):
    """What the broker hands the edge at spawn, on its stdin (never argv or the environment)."""

    link_endpoint: str  # the broker's link ROUTER
    link_public: str  # this spawn's own keypair for the link
    link_secret: str
    server_public: str  # the server's keypair: the public sockets' CURVE identity, and the link server's
    server_secret: str
    control_fd: int  # listening TCP sockets the broker bound and passed on (ZMQ_USE_FD)
    events_fd: int
    control_endpoint: str  # what those sockets are bound to (tcp://HOST:PORT), for libzmq's bookkeeping
    events_endpoint: str
    ipv6: bool
    hwm: int
    max_message_size: int
    connection_burst: int
    connection_rate: float
    memory_limit: int  # bytes of RLIMIT_DATA
    flood_threshold: int  # bytes of growth above the start before the guard cuts a connection
    log_level: str

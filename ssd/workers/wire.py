"""The backend protocol between the broker (ROUTER) and its workers (DEALER).

Every message starts with the protocol tag and a command::

    worker -> broker   [TAG, READY, json(Ready)]
                       [TAG, HEARTBEAT]
                       [TAG, REPLY, request_id, json(reply content)]
                       [TAG, EVENT, topic, json(event content)]
                       [TAG, KERNEL, kernel_id, json(KernelRecord) or b""]   (kernel service: remember / forget)
    broker -> worker   [TAG, REQUEST, request_id, json(Request)]
                       [TAG, HEARTBEAT]
                       [TAG, STOP]
                       [TAG, ADOPT, json([KernelRecord, ...])]   (kernel service, right after READY)

The link is CURVE-encrypted and each worker's key is known to the broker
before the worker starts (see ``Credentials``), so only processes the broker
spawned can speak it.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

import msgspec

__all__ = ["Credentials", "Ready", "Request", "decode", "encode"]

TAG: Final = b"SSDW1"
READY: Final = b"READY"
HEARTBEAT: Final = b"HB"
REQUEST: Final = b"REQ"
REPLY: Final = b"REPLY"
EVENT: Final = b"EVENT"
STOP: Final = b"STOP"
KERNEL: Final = b"KERNEL"
ADOPT: Final = b"ADOPT"


class Credentials(msgspec.Struct, frozen=True):
    """What the broker hands a worker at spawn time, on the worker's stdin."""

    endpoint: str
    server_key: str
    public_key: str
    secret_key: str
    service: str
    heartbeat_interval: float
    log_level: str
    # Service-specific settings, e.g. which user a per-user worker serves.
    options: dict[str, Any] = {}


class Ready(msgspec.Struct, frozen=True):
    """A worker announcing itself for a service."""

    service: str
    pid: int
    capacity: int


class Request(msgspec.Struct, frozen=True):
    """A client request forwarded to a worker, with who sent it."""

    msg_type: str
    content: dict[str, Any]
    client_key: str
    user: str | None = None


_encoder = msgspec.json.Encoder()
T = TypeVar("T")


def encode(value: Any) -> bytes:
    """Encode a struct or plain value as JSON."""
    return _encoder.encode(value)


def decode(data: bytes, kind: type[T]) -> T:
    """Decode JSON into *kind*; raises msgspec.DecodeError/ValidationError."""
    return msgspec.json.decode(data, type=kind)

"""The backend protocol between the broker (ROUTER) and its workers (DEALER).

Every message starts with the protocol tag and a command::

    worker -> broker   [TAG, READY, json(Ready)]
                       [TAG, HEARTBEAT]
                       [TAG, REPLY, request_id, json(reply content)]
                       [TAG, EVENT, kind, json(event content)]   (the broker picks the topic)
                       [TAG, KERNEL, kernel_id, json(KernelRecord) or b""]   (kernel service: remember / forget)
    broker -> worker   [TAG, REQUEST, request_id, json(Request)]
                       [TAG, HEARTBEAT]
                       [TAG, STOP]
                       [TAG, ADOPT, json([KernelRecord, ...])]   (kernel service, right after READY)
                       [TAG, SPARES_STOP, kernel_id, ...]   (kernel service: stop these spares; none: all)
                       [TAG, SAVED, kernel_id]   (kernel service: its latest record of the kernel is stored)

The link is CURVE-encrypted and each worker's key is known to the broker
before the worker starts (see ``Credentials``), so only processes the broker
spawned can speak it. A per-user worker is still its user's to control (that
user can read its key), so the broker bounds what it may send: the sizes here,
a rate (``ssd.broker.quota``), and a schema per event kind.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

import msgspec

__all__ = ["Credentials", "Ready", "Request", "clip", "decode", "encode"]

TAG: Final = b"SSDW1"
READY: Final = b"READY"
HEARTBEAT: Final = b"HB"
REQUEST: Final = b"REQ"
REPLY: Final = b"REPLY"
EVENT: Final = b"EVENT"
STOP: Final = b"STOP"
KERNEL: Final = b"KERNEL"
ADOPT: Final = b"ADOPT"
SPARES_STOP: Final = b"SPARES_STOP"
SAVED: Final = b"SAVED"


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
    """A client request forwarded to a worker, with who sent it.

    *content* is the broker's encoding of the request struct it validated; the worker decodes it with the
    same struct (ssd.contract), so what it acts on is checked again, and parsed once more by nothing else.
    """

    msg_type: str
    content: msgspec.Raw
    client_key: str
    user: str | None = None


# Bounds the broker enforces on what a worker sends (bytes of one frame). An env listing is ~250 bytes
# per environment, so a reply of MAX_REPLY holds some 16000 of them.
MAX_FRAME: Final = 4 << 20  # the backend socket's maxmsgsize: a larger frame drops the connection
MAX_REPLY: Final = MAX_FRAME
MAX_RECORD: Final = 2 << 20  # a kernel record; its env_vars are bounded by the request's own limits
MAX_EVENT: Final = 256 << 10
MAX_READY: Final = 1024
MAX_EVENT_LINE: Final = 32768  # characters of one progress line (a failed tool's tail is cut to its end)

# The hard RLIMIT_AS (bytes) a worker sets on itself before it reads its credentials (ssd.broker.supervisor).
ADDRESS_SPACE_VARIABLE: Final = "SSD_WORKER_ADDRESS_SPACE"

_encoder = msgspec.json.Encoder()
T = TypeVar("T")


def encode(value: Any) -> bytes:
    """Encode a struct or plain value as JSON."""
    return _encoder.encode(value)


def decode(data: bytes, kind: type[T]) -> T:
    """Decode JSON into *kind*; raises msgspec.DecodeError/ValidationError."""
    return msgspec.json.decode(data, type=kind)


def clip(text: str | None, limit: int) -> str | None:
    """*text* cut to its last *limit* characters (the end of a tool's output says why it failed)."""
    if text is None or len(text) <= limit:
        return text
    return "..." + text[-(limit - 3) :]

"""The client protocol: Jupyter messages over DEALER -> ROUTER, typed at the edge.

Frames are those of ``jupyter_client.session.Session``: routing ids,
``<IDS|MSG>``, signature, header, parent header, metadata, content. CURVE
already gives the link confidentiality and integrity, so the HMAC key is empty
and the signature frame is empty.

Requests are ``<family>_request``; replies ``<family>_reply`` with
``status: ok | error`` and, for errors, ``ename`` (a stable code) and ``evalue``
(a message for a person). A server traceback never crosses the wire.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from jupyter_client.session import DELIM, Session

__all__ = [
    "PROTOCOL_VERSION",
    "BadMessage",
    "Message",
    "Wire",
    "error_content",
    "reply_type",
]

PROTOCOL_VERSION: Final = "1.0"

# Stable error codes (``ename``) the server sends.
BAD_MESSAGE: Final = "bad_message"
BAD_REQUEST: Final = "bad_request"
UNKNOWN_MESSAGE_TYPE: Final = "unknown_message_type"
NOT_AUTHORIZED: Final = "not_authorized"
SERVICE_UNAVAILABLE: Final = "service_unavailable"
WORKER_LOST: Final = "worker_lost"
TOO_MANY_REQUESTS: Final = "too_many_requests"
SHUTTING_DOWN: Final = "shutting_down"
INTERNAL_ERROR: Final = "internal_error"

# Reply type used when a message is too broken to know what it asked for.
PROTOCOL_ERROR_TYPE: Final = "protocol_error"

_MAX_MSG_TYPE = 64


class Header(msgspec.Struct, frozen=True):
    """The parts of a Jupyter header the server relies on; other keys are kept, not used."""

    msg_id: str
    msg_type: str


class BadMessage(Exception):
    """A message could not be parsed; ``header`` is set when it was readable."""

    def __init__(self, reason: str, header: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.header = header


@dataclass(frozen=True)
class Message:
    """A parsed Jupyter message: routing ids plus the typed header and raw content."""

    idents: list[bytes]
    header: dict[str, Any]
    parent_header: dict[str, Any]
    content: Any

    @property
    def msg_type(self) -> str:
        """The message type from the header."""
        return str(self.header["msg_type"])

    @property
    def msg_id(self) -> str:
        """The message id from the header."""
        return str(self.header["msg_id"])


def reply_type(msg_type: str) -> str:
    """Return the reply type for a request type (``ping_request`` -> ``ping_reply``)."""
    if msg_type.endswith("_request"):
        return msg_type[: -len("_request")] + "_reply"
    return PROTOCOL_ERROR_TYPE


def error_content(ename: str, evalue: str) -> dict[str, Any]:
    """Build the content of an error reply."""
    return {"status": "error", "ename": ename, "evalue": evalue}


def _quiet_unsigned(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Message signing is disabled")


class Wire:
    """Serialize and parse ssd messages with a Jupyter Session (empty HMAC key)."""

    def __init__(self, username: str = "ssd") -> None:
        # Session warns that an empty key disables signing; here that is the
        # design (CURVE authenticates and encrypts every frame), so keep it quiet.
        logging.getLogger("traitlets").addFilter(_quiet_unsigned)
        self.session = Session(key=b"", username=username)

    def serialize(
        self,
        msg_type: str,
        content: dict[str, Any],
        *,
        parent: dict[str, Any] | None = None,
        idents: list[bytes] | None = None,
    ) -> tuple[str, list[bytes]]:
        """Build a message; return its msg_id and its frames."""
        # Wrapped so that Session takes the dict as the header itself, even when a
        # client's header has a key named "header".
        wrapped = {"header": parent} if parent else None
        msg = self.session.msg(msg_type, content, parent=wrapped)
        return msg["header"]["msg_id"], self.session.serialize(msg, ident=idents)

    def parse(self, frames: list[bytes], *, has_idents: bool) -> Message:
        """Parse frames into a Message or raise BadMessage naming the problem."""
        if has_idents:
            try:
                split = frames.index(DELIM)
            except ValueError:
                raise BadMessage("missing <IDS|MSG> delimiter") from None
            idents, rest = frames[:split], frames[split + 1 :]
        else:
            idents, rest = [], frames[1:] if frames and frames[0] == DELIM else frames
        if len(rest) < 5:
            raise BadMessage(f"expected signature, header, parent, metadata, content; got {len(rest)} frames")
        header = _decode_dict(rest[1], "header")
        try:
            typed = msgspec.convert(header, Header)
        except msgspec.ValidationError as exc:
            raise BadMessage(f"header: {exc}") from None
        if not typed.msg_type or len(typed.msg_type) > _MAX_MSG_TYPE:
            raise BadMessage("header: msg_type is empty or too long", header)
        parent = _decode_dict(rest[2], "parent_header", header)
        _decode_dict(rest[3], "metadata", header)
        content = _decode_dict(rest[4], "content", header)
        return Message(idents=list(idents), header=header, parent_header=parent, content=content)


_decoder = msgspec.json.Decoder()


def _decode_dict(frame: bytes, what: str, header: dict[str, Any] | None = None) -> dict[str, Any]:
    try:
        value = _decoder.decode(frame)
    except msgspec.DecodeError as exc:
        raise BadMessage(f"{what}: not JSON ({exc})", header) from None
    if not isinstance(value, dict):
        raise BadMessage(f"{what}: expected a JSON object, got {type(value).__name__}", header)
    return value

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

import datetime
import itertools
import os
import uuid
from dataclasses import dataclass
from typing import Any, Final

import msgspec

DELIM: Final = b"<IDS|MSG>"
# The Jupyter messaging protocol version written in headers.
JUPYTER_PROTOCOL_VERSION: Final = "5.3"

__all__ = [
    "DELIM",
    "PROTOCOL_VERSION",
    "BadMessage",
    "Content",
    "Message",
    "Wire",
    "error_content",
    "reply_type",
]

PROTOCOL_VERSION: Final = "1.0"

# The stable error codes (``ename``) are ssd.errors.ErrorCode.

# Reply type used when a message is too broken to know what it asked for.
PROTOCOL_ERROR_TYPE: Final = "protocol_error"

_MAX_MSG_TYPE = 64

# A message's content as a sender hands it over: a struct (ssd.replies, ssd.messages), a dict, or encoded JSON.
Content = dict[str, Any] | msgspec.Struct | bytes


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
    """Build the content of an error reply (*ename*: an ErrorCode, or the code of an SSDError being answered)."""
    return {"status": "error", "ename": ename, "evalue": evalue}


class Wire:
    """Serialize and parse ssd messages in Jupyter's wire format.

    The frames are exactly what ``jupyter_client.session.Session`` with an empty
    key produces and accepts (tests check both directions); they are encoded
    with msgspec because Session's encoder was a fifth of the broker's time
    (see benchmarks/bench_broker.py).
    """

    def __init__(self, username: str = "ssd") -> None:
        self.username = username
        self.session_id = uuid.uuid4().hex
        self._prefix = f"{self.session_id}_{os.getpid()}_"
        self._count = itertools.count()

    def serialize(
        self,
        msg_type: str,
        content: Content,
        *,
        parent: dict[str, Any] | None = None,
        idents: list[bytes] | None = None,
    ) -> tuple[str, list[bytes]]:
        """Build a message; return its msg_id and its frames. Bytes content is sent as is."""
        msg_id = f"{self._prefix}{next(self._count)}"
        header = {
            "msg_id": msg_id,
            "msg_type": msg_type,
            "username": self.username,
            "session": self.session_id,
            "date": datetime.datetime.now(datetime.UTC),
            "version": JUPYTER_PROTOCOL_VERSION,
        }
        body = content if isinstance(content, bytes) else _encode(content)
        frames = [*(idents or []), DELIM, b"", _encode(header), _encode(parent or {}), b"{}", body]
        return msg_id, frames

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
_encode = msgspec.json.Encoder().encode


def _decode_dict(frame: bytes, what: str, header: dict[str, Any] | None = None) -> dict[str, Any]:
    try:
        value = _decoder.decode(frame)
    except msgspec.DecodeError as exc:
        raise BadMessage(f"{what}: not JSON ({exc})", header) from None
    if not isinstance(value, dict):
        raise BadMessage(f"{what}: expected a JSON object, got {type(value).__name__}", header)
    return value

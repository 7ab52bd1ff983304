"""The wire format is Jupyter's: jupyter_client's Session reads what ssd writes and vice versa."""

from __future__ import annotations

import pytest
from jupyter_client.session import Session

from ssd.errors import ErrorCode
from ssd.protocol import DELIM, BadMessage, Wire, error_content, reply_type


def test_session_reads_what_wire_writes() -> None:
    """Session.deserialize accepts a Wire message and sees the same header, parent and content."""
    wire = Wire(username="alice")
    parent = {"msg_id": "abc", "msg_type": "ping_request"}
    msg_id, frames = wire.serialize("ping_reply", {"status": "ok", "data": "é"}, parent=parent, idents=[b"rid"])
    session = Session(key=b"")
    idents, rest = session.feed_identities(frames)
    msg = session.deserialize(rest)
    assert idents == [b"rid"]
    assert msg["header"]["msg_id"] == msg_id
    assert msg["header"]["msg_type"] == "ping_reply"
    assert msg["header"]["username"] == "alice"
    assert msg["header"]["version"] == "5.3"
    assert msg["header"]["date"].tzinfo is not None
    assert msg["parent_header"]["msg_id"] == "abc"
    assert msg["content"] == {"status": "ok", "data": "é"}
    assert msg["metadata"] == {}


def test_wire_reads_what_session_writes() -> None:
    """Wire.parse accepts a Session message with routing ids."""
    session = Session(key=b"")
    msg = session.msg("server_info_request", {"x": [1, 2]})
    frames = session.serialize(msg, ident=[b"a", b"b"])
    parsed = Wire().parse(frames, has_idents=True)
    assert parsed.idents == [b"a", b"b"]
    assert parsed.msg_type == "server_info_request"
    assert parsed.msg_id == msg["header"]["msg_id"]
    assert parsed.content == {"x": [1, 2]}


def test_msg_ids_are_unique_and_bytes_content_passes_through() -> None:
    """Each message gets a new id; already-encoded content is sent unchanged."""
    wire = Wire()
    first, frames = wire.serialize("a_reply", b'{"status":"ok"}')
    second, _ = wire.serialize("a_reply", {})
    assert first != second
    assert frames[0] == DELIM
    assert frames[-1] == b'{"status":"ok"}'


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([b"x"], "delimiter"),
        ([DELIM, b"", b"{}"], "got 2 frames"),
        ([DELIM, b"", b"not json", b"{}", b"{}", b"{}"], "header: not JSON"),
        ([DELIM, b"", b"[]", b"{}", b"{}", b"{}"], "expected a JSON object"),
        ([DELIM, b"", b'{"msg_id": "1"}', b"{}", b"{}", b"{}"], "msg_type"),
        ([DELIM, b"", b'{"msg_id": "1", "msg_type": ""}', b"{}", b"{}", b"{}"], "empty"),
        ([DELIM, b"", b'{"msg_id": "1", "msg_type": "a"}', b"{}", b"{}", b"7"], "content"),
    ],
)
def test_bad_frames_name_the_problem(frames: list[bytes], reason: str) -> None:
    """Every malformed message raises BadMessage with a reason a person can read."""
    with pytest.raises(BadMessage) as info:
        Wire().parse(frames, has_idents=True)
    assert reason in info.value.reason


def test_reply_types_and_errors() -> None:
    """Replies are <family>_reply; errors carry status, ename, evalue."""
    assert reply_type("ping_request") == "ping_reply"
    assert reply_type("weird") == "protocol_error"
    assert error_content(ErrorCode.BAD_REQUEST, "no") == {
        "status": "error",
        "ename": "bad_request",  # the wire value
        "evalue": "no",
    }

"""A real daemon against malformed, oversized, random and unauthenticated input on its sockets."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jupyter_client.session import DELIM, Session
from support.daemon import Daemon, start_daemon
from support.eventually import eventually

from ssd.broker.keyport import KEY_HEADER, KEY_REQUEST, parse_header

SESSION = Session(key=b"", username="test")
# Indices in the frames of Session.serialize(): [DELIM, signature, header, parent, metadata, content].
HEADER, PARENT, METADATA, CONTENT = 2, 3, 4, 5
ENAMES = {"bad_message", "bad_request", "unknown_message_type", "service_unavailable", "not_authorized"}


class Clients:
    """Sockets to one daemon, all in one context, kept until close() destroys them."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.sockets: list[zmq.Socket[bytes]] = []
        self.public_keys: dict[zmq.Socket[bytes], bytes] = {}  # of the CURVE sockets

    def dealer(self, port: int, server_key: bytes | None = None) -> zmq.Socket[bytes]:
        """A DEALER connected to *port*: CURVE with a fresh client key if *server_key* is given, else NULL."""
        sock = self.ctx.socket(zmq.DEALER)
        sock.linger = 0
        self.sockets.append(sock)
        if server_key is not None:
            public_key, secret_key = zmq.curve_keypair()
            sock.curve_publickey, sock.curve_secretkey = public_key, secret_key
            sock.curve_serverkey = server_key
            self.public_keys[sock] = public_key
        sock.connect(f"tcp://127.0.0.1:{port}")
        return sock

    def curve(self, server_key: bytes | None = None) -> zmq.Socket[bytes]:
        """A CURVE DEALER on the control port, with the daemon's key unless another is given."""
        return self.dealer(self.daemon.port, server_key or str(self.daemon.info["public_key"]).encode())

    def close(self) -> None:
        """Close every socket and the context."""
        self.ctx.destroy(linger=0)
        self.sockets.clear()
        self.public_keys.clear()


@pytest.fixture
def clients(daemon: Daemon) -> Iterator[Clients]:
    """Clients of the test's daemon, closed after the test."""
    made = Clients(daemon)
    yield made
    made.close()


def request(msg_type: str, content: dict[str, Any]) -> tuple[str, list[bytes]]:
    """A well-formed request: its msg_id and its frames."""
    msg = SESSION.msg(msg_type, content)
    return msg["header"]["msg_id"], SESSION.serialize(msg)


def replaced(index: int, frame: bytes) -> list[bytes]:
    """A ping_request whose frame *index* is replaced by *frame*."""
    frames = request("ping_request", {})[1]
    frames[index] = frame
    return frames


def parse_reply(frames: list[bytes]) -> dict[str, Any]:
    """Deserialize a reply the way a Jupyter client does."""
    _, parts = SESSION.feed_identities(frames)
    return SESSION.deserialize(parts)


def recv_reply(sock: zmq.Socket[bytes], timeout: float = 5.0) -> dict[str, Any] | None:
    """The next reply on *sock*, or None after *timeout* seconds."""
    if not sock.poll(int(timeout * 1000)):
        return None
    return parse_reply(sock.recv_multipart())


def ping(sock: zmq.Socket[bytes], data: str = "hello") -> dict[str, Any]:
    """Send a ping and return its reply, skipping replies to earlier messages."""
    msg_id, frames = request("ping_request", {"data": data})
    sock.send_multipart(frames)
    while (reply := recv_reply(sock)) is not None:
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply
    raise AssertionError("no ping_reply within 5 s")


def login(clients: Clients, sock: zmq.Socket[bytes]) -> None:
    """Authorize *sock*'s key for the daemon's user and log in with it, so echo_request reaches the worker."""
    clients.daemon.authorize(clients.public_keys[sock])
    msg_id, frames = request("login_request", {"username": pwd.getpwuid(os.geteuid()).pw_name})
    sock.send_multipart(frames)
    reply = recv_reply(sock, timeout=15)
    assert reply is not None, "no login_reply within 15 s"
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "ok", reply["content"]


def assert_clean_error(content: dict[str, Any], ename: str, mentions: str) -> None:
    """An error reply with a stable code and a readable message, never a traceback."""
    assert content["status"] == "error", content
    assert content["ename"] == ename, content
    evalue = content["evalue"]
    assert isinstance(evalue, str)
    assert evalue.strip()
    assert "Traceback" not in evalue
    assert 'File "' not in evalue
    assert mentions in evalue, evalue


def test_ping_gets_ok_reply_with_data_and_time(clients: Clients) -> None:
    """A well-formed ping_request is answered ok with the data echoed and the server time."""
    reply = ping(clients.curve(), "some data ✓")
    assert reply["msg_type"] == "ping_reply"
    assert reply["content"]["status"] == "ok"
    assert reply["content"]["data"] == "some data ✓"
    assert isinstance(reply["content"]["server_time"], float)


@pytest.mark.parametrize(
    ("frames", "mentions"),
    [
        pytest.param([b""], "delimiter", id="one-empty-frame"),
        pytest.param([b""] * 6, "delimiter", id="six-empty-frames"),
        pytest.param([DELIM, b"", b"", b"", b"", b""], "header", id="empty-after-delimiter"),
        pytest.param(request("ping_request", {})[1][1:], "delimiter", id="no-delimiter"),
        pytest.param([DELIM, b"", b"{}"], "frames", id="too-few-frames"),
        pytest.param(replaced(HEADER, b"{not json"), "header", id="header-not-json"),
        pytest.param(replaced(HEADER, b"[1, 2]"), "header", id="header-is-list"),
        pytest.param(replaced(HEADER, b'{"msg_id": "m1"}'), "msg_type", id="header-without-msg_type"),
        pytest.param(replaced(HEADER, b'{"msg_id": "m1", "msg_type": 7}'), "msg_type", id="msg_type-not-str"),
        pytest.param(replaced(HEADER, b'{"msg_id": "m1", "msg_type": ""}'), "msg_type", id="msg_type-empty"),
        pytest.param(request("ping_request", {})[1] + [b"buffer"] * 12, "too many frames", id="too-many-frames"),
    ],
)
def test_unreadable_message_gets_bad_message(clients: Clients, frames: list[bytes], mentions: str) -> None:
    """A message whose header cannot be read is answered bad_message, and the client can go on."""
    sock = clients.curve()
    sock.send_multipart(frames)
    reply = recv_reply(sock)
    assert reply is not None, "no reply to a bad message"
    assert_clean_error(reply["content"], "bad_message", mentions)
    assert ping(sock)["content"]["status"] == "ok"


@pytest.mark.parametrize(
    ("msg_type", "index", "frame", "ename", "mentions"),
    [
        ("ping_request", PARENT, b"not json", "bad_message", "parent_header"),
        ("ping_request", METADATA, b'"a string"', "bad_message", "metadata"),
        ("ping_request", CONTENT, b"{oops", "bad_message", "content"),
        ("ping_request", CONTENT, b"[]", "bad_message", "content"),
        ("ping_request", CONTENT, b'{"data": 123}', "bad_request", "`data`"),
        ("ping_request", CONTENT, b'{"data": "x", "nope": 1}', "bad_request", "nope"),
        ("ping_request", CONTENT, json.dumps({"data": "x" * 2000}).encode(), "bad_request", "`data`"),
        ("server_info_request", CONTENT, b'{"verbose": true}', "bad_request", "verbose"),
        ("frobnicate_request", CONTENT, b"{}", "unknown_message_type", "frobnicate_request"),
    ],
)
def test_readable_bad_request_gets_typed_error_reply(
    clients: Clients,
    msg_type: str,
    index: int,
    frame: bytes,
    ename: str,
    mentions: str,
) -> None:
    """A request with a readable header gets its own *_reply, parented to it, with a typed error."""
    sock = clients.curve()
    msg_id, frames = request(msg_type, {})
    frames[index] = frame
    sock.send_multipart(frames)
    reply = recv_reply(sock)
    assert reply is not None, "no reply to a bad request"
    assert reply["msg_type"] == msg_type.removesuffix("_request") + "_reply"
    assert reply["parent_header"]["msg_id"] == msg_id
    assert_clean_error(reply["content"], ename, mentions)


def test_oversized_message_drops_client_not_daemon(tmp_path: Path) -> None:
    """A message over max_message_size gets its sender dropped unanswered; others are still served."""
    daemon = start_daemon(tmp_path, extra_env={"SSD_SERVER_MAX_MESSAGE_SIZE": "4096"})
    clients = Clients(daemon)
    try:
        big = clients.curve()
        big.send_multipart(request("ping_request", {"data": "x" * 8000})[1])
        assert recv_reply(big, timeout=1.0) is None
        assert daemon.process.poll() is None
        assert ping(clients.curve())["content"]["status"] == "ok"
    finally:
        clients.close()
        code = daemon.stop()
    assert code == 0, daemon.log()


def test_wrong_server_key_or_no_curve_gets_nothing(clients: Clients) -> None:
    """A client that does not know the server key, or speaks no CURVE, is never answered."""
    impostor = clients.curve(server_key=zmq.curve_keypair()[0])
    impostor.send_multipart(request("ping_request", {})[1])
    plain = clients.dealer(clients.daemon.port)
    plain.send_multipart(request("ping_request", {})[1])
    assert recv_reply(impostor, timeout=1.0) is None
    assert recv_reply(plain, timeout=0.2) is None
    assert ping(clients.curve())["content"]["status"] == "ok"


def test_key_port_answers_key_request_and_ignores_garbage(clients: Clients) -> None:
    """The plain-TCP key port of a running daemon returns its public key and facts, and nothing for garbage."""
    daemon = clients.daemon
    port = int(str(daemon.info["key_port"]))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"SSDKEY1?\n")  # the old ZeroMQ request (and a newline): never answered
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(100) == b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(KEY_REQUEST)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    header = parse_header(reply[: KEY_HEADER.size])
    assert header is not None
    assert header[0] == str(daemon.info["public_key"]).encode()
    assert json.loads(reply[KEY_HEADER.size :])["fingerprint"] == daemon.info["fingerprint"]


def test_sigterm_exits_zero_and_leaves_nothing(daemon: Daemon) -> None:
    """SIGTERM stops the daemon with exit 0, reaps every worker and removes daemon.json."""
    parent = psutil.Process(daemon.process.pid)
    children = eventually(lambda: parent.children(recursive=True) or None, "the diag worker", timeout=10)
    assert daemon.stop() == 0, daemon.log()
    assert [c.pid for c in children if c.is_running()] == []
    assert not (daemon.state_dir / "daemon.json").exists()


# -- random input -------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
json_frames = json_values.map(lambda v: json.dumps(v).encode())
any_frame = st.binary(max_size=48) | st.just(DELIM) | json_frames
content_dicts = st.dictionaries(st.sampled_from(["data", "nope", "verbose", ""]), json_values, max_size=3)
headers = st.fixed_dictionaries(
    {},
    optional={
        "msg_id": st.text(max_size=8) | json_values,
        "msg_type": st.sampled_from(["ping_request", "echo_request", "x" * 80 + "_request", ""]) | json_values,
    },
)


@st.composite
def mutated_messages(draw: st.DrawFn) -> list[bytes]:
    """A valid request with one or two frames replaced, dropped, inserted or appended."""
    msg_type = draw(st.sampled_from(["ping_request", "server_info_request", "echo_request", "what_request", "x"]))
    frames = request(msg_type, draw(content_dicts))[1]
    for _ in range(draw(st.integers(1, 2))):
        index = draw(st.integers(0, len(frames)))
        op = draw(st.sampled_from(["replace", "drop", "insert", "header", "append"]))
        if op == "replace" and index < len(frames):
            frames[index] = draw(any_frame)
        elif op == "drop" and index < len(frames) and len(frames) > 1:
            del frames[index]
        elif op == "header":
            frames[min(HEADER, len(frames) - 1)] = json.dumps(draw(headers)).encode()
        elif op == "append":
            frames.extend(draw(st.lists(any_frame, max_size=12)))
        else:
            frames.insert(index, draw(any_frame))
    return frames


def check_reply(frames: list[bytes]) -> None:
    """Every reply to random input is a Jupyter reply: ok, or a typed error without a traceback."""
    content = parse_reply(frames)["content"]
    assert content["status"] in ("ok", "error"), content
    if content["status"] == "error":
        assert content["ename"] in ENAMES, content
        assert "Traceback" not in content["evalue"]


def test_random_messages_never_break_the_daemon(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Hundreds of random and mutated messages from one client: each answered, daemon alive, ping works."""
    daemon = start_daemon(tmp_path_factory.mktemp("fuzz"), extra_env={"SSD_WORKERS_DIAG": "true"})
    clients = Clients(daemon)
    counts = {"sent": 0, "replies": 0}
    try:
        sock = clients.curve()
        login(clients, sock)  # so that the echo_request messages reach the diag worker

        def drain(timeout_ms: int) -> None:
            while sock.poll(timeout_ms):
                check_reply(sock.recv_multipart())
                counts["replies"] += 1

        @settings(
            max_examples=300,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(frames=st.lists(any_frame, min_size=1, max_size=20) | mutated_messages())
        def send(frames: list[bytes]) -> None:
            sock.send_multipart(frames)
            counts["sent"] += 1
            drain(0)

        send()
        deadline = time.monotonic() + 10
        while counts["replies"] < counts["sent"] and time.monotonic() < deadline:
            drain(100)
        assert counts["replies"] == counts["sent"], f"{counts}: some messages got no reply"
        assert daemon.process.poll() is None, daemon.log()
        assert ping(sock)["content"]["status"] == "ok"
        assert "Traceback" not in daemon.log()
    finally:
        clients.close()
        code = daemon.stop()
    assert code == 0, daemon.log()

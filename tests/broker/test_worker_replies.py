"""Worker replies larger than the client message limit reach the client and keep the worker; one whose client
left is logged."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest
from support.daemon import new_client, start_daemon
from support.eventually import eventually

from ssd.errors import RequestTimeout


def test_large_worker_reply_does_not_cycle_the_worker(tmp_path: Path) -> None:
    """A reply above max_message_size (a limit on what clients send) is delivered; same worker after."""
    daemon = start_daemon(tmp_path, extra_env={"SSD_WORKERS_DIAG": "true", "SSD_SERVER_MAX_MESSAGE_SIZE": "4096"})
    client = new_client(daemon, tmp_path / "c", timeout=10)
    daemon.authorize(client.aclient.identity.public)
    try:
        client.connect()
        client.login(pwd.getpwuid(os.geteuid()).pw_name)  # echo_request needs a login
        # With CURVE framing (~33 bytes) the request just fits in 4096 bytes; the reply does not.
        data = "x" * 4050
        first = client.request("echo_request", {"data": data})
        second = client.request("echo_request", {"data": data})
        assert first["data"] == data
        assert second["pid"] == first["pid"]
    finally:
        client.close()
        assert daemon.stop() == 0
    assert "restarting" not in daemon.log()


def test_a_reply_whose_client_left_is_logged_never_silently_dropped(tmp_path: Path) -> None:
    """A client that leaves before its reply: the edge cannot route the reply (ROUTER_MANDATORY) and says so."""
    daemon = start_daemon(tmp_path, extra_env={"SSD_WORKERS_DIAG": "true"})
    client = new_client(daemon, tmp_path / "c", timeout=10)
    daemon.authorize(client.aclient.identity.public)
    try:
        client.connect()
        client.login(pwd.getpwuid(os.geteuid()).pw_name)
        with pytest.raises(RequestTimeout):
            client.request("echo_request", {"data": "late", "delay": 2.0}, timeout=0.3)
    finally:
        client.close()  # gone before the echo answers
    try:
        eventually(lambda: "dropped a reply to a client: it is no longer connected" in daemon.log(), "the drop logged")
    finally:
        assert daemon.stop() == 0

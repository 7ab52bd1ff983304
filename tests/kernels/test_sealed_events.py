"""A kernel's connection info on the events socket only sealed: every key bound to the kernel's user can
open it (another session of the user attaches at once); a subscriber whose key is not bound gets the
event but not the secret; the event's bytes hold neither the HMAC key nor the relay's secret key."""

from __future__ import annotations

import json
from pathlib import Path

from envfixtures import conda_copy, kernel_venv
from kerneltools import EventTap, evaluate
from support.daemon import Daemon, logged_in_client, new_client, start_daemon

from ssd.sealed import SealError, open_sealed, sealed_context


def test_ready_event_carries_the_connection_sealed_for_the_users_keys(tmp_path: Path) -> None:
    """Client A starts a kernel; client B (same user, own key) opens the ready event's box and runs code
    with it; client C, not logged in, cannot; a box does not open as another kernel's."""
    conda_copy(kernel_venv(), tmp_path / "envs" / "sci")
    daemon: Daemon = start_daemon(tmp_path, extra_env={"SSD_ENVS_ENVS_DIRS": str(tmp_path / "envs")})
    a = logged_in_client(daemon, tmp_path / "a", timeout=60)
    b = logged_in_client(daemon, tmp_path / "b", timeout=60)
    c = new_client(daemon, tmp_path / "c")
    c.connect()
    taps = {name: EventTap(client, "kernel.") for name, client in (("b", b), ("c", c))}
    try:
        reply = a.kernel_start("sci", "ipykernel")
        kernel_id = reply.kernel.kernel_id
        heard = {name: tap.kernel_state(kernel_id, "ready") for name, tap in taps.items()}
        raw = json.dumps(heard["c"])
        assert reply.connection["key"] not in raw
        assert reply.connection["curve_secretkey"] not in raw
        opened = b.sealed_connection_info(heard["b"])
        assert opened == a.connection_info(reply.connection)
        assert evaluate(opened, "1 + 1") == 2
        assert c.sealed_connection_info(heard["c"]) is None
        identity = b.aclient.identity
        try:
            server = b.aclient.server_key
            assert server is not None
            box = heard["b"]["sealed_connection"]
            open_sealed(box, identity.public, identity.secret, sealed_context("other"), sender=server)
            raise AssertionError("a box opened for another kernel id")
        except SealError:
            pass
        a.kernel_restart(kernel_id)
        again = taps["b"].kernel_state(kernel_id, "restarted")
        assert b.sealed_connection_info(again) == opened  # same ports and keys after a restart
        a.kernel_shutdown(kernel_id)
    finally:
        for tap in taps.values():
            tap.close()
        for client in (a, b, c):
            client.close()
        daemon.stop_and_check()

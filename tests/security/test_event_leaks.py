"""Finding 11: events carry no secrets, and a failed restart's kernel output is one.

Any CURVE client may subscribe to any topic on the events socket, so a kernel that fails to
come back must be published as dead with a reason, never with what the kernel last printed
(its code's output, paths, tokens); the requester's own reply keeps that detail.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from envfixtures import public_dir
from kerneltools import EventTap, give_env
from support.ci import require_root
from support.daemon import new_client
from users import error_of, login, system_daemon, users

from ssd.errors import ErrorCode


def test_a_failed_restart_publishes_no_kernel_output(tmp_path: Path) -> None:
    """The kernel prints a secret and exits on restart: the requester's error shows it, the event does not."""
    require_root()
    secret = f"kernel-output-{secrets.token_hex(8)}"
    with users(1) as (alice,), public_dir() as where, system_daemon(tmp_path) as daemon:
        prefix = give_env(alice, where)
        client = new_client(daemon, tmp_path / "alice", timeout=60)
        client.connect()
        stranger = new_client(daemon, tmp_path / "stranger")  # never logs in: any key may subscribe
        stranger.connect()
        tap = EventTap(stranger)
        try:
            login(client, alice.name, alice.password)
            kernel_id = client.kernel_start("sci", "ipykernel").kernel.kernel_id
            (site,) = prefix.glob("lib/python3*/site-packages")
            hook = site / "zz-test-leak.pth"  # its import line runs at every start of the environment's Python
            hook.write_text(f"import os, sys; sys.stderr.write({secret!r} + '\\n'); sys.stderr.flush(); os._exit(3)\n")
            os.chown(hook, alice.uid, alice.gid)
            refused = error_of(client.kernel_restart, kernel_id)
            assert refused.code == ErrorCode.KERNEL_START_FAILED
            assert secret in refused.message  # the requester is told what the kernel said
            dead = tap.kernel_state(kernel_id, "dead")
            assert "exited during start" in dead["reason"]
            assert secret not in repr(dead)
            assert not [seen for seen in tap.seen if secret in repr(seen)]
        finally:
            tap.close()
            stranger.close()
            client.close()

"""``python -m ssd.workers`` run by hand, without credentials the daemon made: a clear refusal."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ssd.workers import wire


@pytest.mark.parametrize(
    ("stdin", "says"),
    [
        pytest.param(b"garbage\n", "no valid credentials on stdin", id="garbage"),
        pytest.param(b"", "no valid credentials on stdin", id="empty"),
        pytest.param(b'{"endpoint": "tcp://127.0.0.1:1"}\n', "no valid credentials on stdin", id="incomplete"),
        pytest.param(
            wire.encode(
                wire.Credentials(
                    endpoint="tcp://127.0.0.1:1",
                    server_key="x",
                    public_key="y",
                    secret_key="z",
                    service="nonsense",
                    heartbeat_interval=1.0,
                    log_level="info",
                )
            )
            + b"\n",
            "unknown service 'nonsense'",
            id="unknown-service",
        ),
    ],
)
def test_worker_run_by_hand_exits_2(stdin: bytes, says: str) -> None:
    """``python -m ssd.workers`` without daemon-made credentials exits 2 and says why, without a traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "ssd.workers"], input=stdin, capture_output=True, timeout=30, check=False
    )
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 2, stderr
    assert says in stderr
    assert "Traceback" not in stderr
    if "credentials" in says:
        assert "started by the ssd daemon" in stderr

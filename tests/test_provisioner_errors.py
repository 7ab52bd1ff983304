"""Whatever fails in the provisioner, Jupyter shows a sentence with the fix, never a traceback or "Unhandled error".

The failures are real: a client directory that cannot be made (an OSError from
inside the client library) at a start, and while Jupyter's restarter polls.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from jupyter_client.manager import AsyncKernelManager
from tornado import web

from ssd.ctl.kernelspec import spec_document
from ssd.errors import ErrorCode
from ssd.kernelerrors import KernelStartError
from ssd.provisioner import SSDProvisioner

HOST = "127.0.0.1:9"  # never reached: the client fails on this machine first
ENV = {"name": "sci", "prefix": "/opt/envs/sci", "python": "3.11"}


@pytest.fixture
def broken_client_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """SSD_CLIENT_DIR inside a plain file: making the client's key fails with an OSError; the kernelspec ``sci``."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("SSD_CLIENT_DIR", str(blocker / "client"))
    folder = tmp_path / "jupyter" / "kernels" / "sci"
    folder.mkdir(parents=True)
    (folder / "kernel.json").write_text(json.dumps(spec_document(HOST, HOST, "alice", ENV, "ipykernel", "sci")))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    return blocker


def test_a_local_failure_at_start_is_the_error_jupyter_shows(broken_client_dir: Path) -> None:
    """The KernelManager gets a KernelStartError (an HTTPError Jupyter Server answers): where, why, no traceback."""

    async def attempt() -> KernelStartError:
        km = AsyncKernelManager(kernel_name="sci")
        with pytest.raises(KernelStartError) as failed:
            await km.start_kernel()
        assert not km.has_kernel
        return failed.value

    error = asyncio.run(attempt())
    assert error.code == ErrorCode.LOCAL_ERROR
    assert isinstance(error, web.HTTPError)
    assert error.reason == "ssd local_error"
    first, second = str(error).splitlines()[:2]
    assert first == f"ssd could not start a kernel on {HOST} (environment sci)."
    assert str(broken_client_dir) in second


def test_a_local_failure_while_polling_is_warned_once(
    broken_client_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The restarter's poll: the kernel counts as running (no second kernel), one warning naming the problem."""
    provisioner = SSDProvisioner(host=HOST, env=ENV["prefix"], kind="ipykernel")
    provisioner.remote_id = "0d4c3bde-6a86-4d2b-9a43-3c0c8e2a7f10"
    with caplog.at_level(logging.INFO):
        assert asyncio.run(provisioner.poll()) is None
        assert asyncio.run(provisioner.poll()) is None
    said = [r.getMessage() for r in caplog.records if "ssd-provisioner" in r.getMessage()]
    assert len(said) == 1, said
    assert str(broken_client_dir) in said[0]

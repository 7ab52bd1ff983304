"""Shared fixtures: a real daemon in a subprocess on loopback, a client directory."""

from __future__ import annotations

import importlib.metadata
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.daemon import Daemon, start_daemon

try:  # tests/spyder run in Spyder's own environment (.ci/run's last step), never in one without Spyder
    importlib.metadata.version("spyder")
    SPYDER_RUN = True
except importlib.metadata.PackageNotFoundError:
    SPYDER_RUN = False
    collect_ignore = ["spyder"]

# In Spyder's environment the run ends with os._exit: PyQt5 5.15 segfaults while the interpreter tears down
# Qt's global objects (Spyder's plugins, the console's widgets) after their Python wrappers (exit 139 after
# "10 passed"). By pytest_unconfigure every test ran and the summary is printed; what is skipped is only
# Python's own shutdown, and pytest's real exit status is kept.
_EXIT = {"status": 0}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remember pytest's verdict (for the exit of a Spyder run)."""
    _EXIT["status"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """A Spyder run leaves now, with pytest's status, before Python tears Qt down."""
    if SPYDER_RUN:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT["status"])


# Helper modules of test folders (tests/envs/envfixtures.py, tests/kernels/kerneltools.py) import by plain name
# from any test file, not only after pytest happened to collect their folder.
sys.path.insert(0, str(Path(__file__).parent / "envs"))
sys.path.insert(0, str(Path(__file__).parent / "kernels"))


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A daemon with the diagnostic worker, stopped (and checked) after the test."""
    d = start_daemon(tmp_path, extra_env={"SSD_WORKERS_DIAG": "true"})
    yield d
    assert d.stop() == 0, d.log()


@pytest.fixture
def client_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh client directory (keys, known hosts) for this test only."""
    path = tmp_path / "client"
    monkeypatch.setenv("SSD_CLIENT_DIR", str(path))
    return path


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a thread running (zmq contexts, loops)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not leaked:
            return
        time.sleep(0.05)
    pytest.fail(f"test leaked threads: {leaked}")

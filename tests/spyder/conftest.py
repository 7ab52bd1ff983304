"""The Spyder plugin's world: a real Spyder (IPython console, Variable Explorer, the plugin from its entry
point) in Spyder's own venv, headless; a real system-mode daemon announcing itself on loopback; a real user
with a real kernel environment. Built once per session: starting Spyder and a daemon is the slow part.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
_CLIENT_DIR = Path(tempfile.mkdtemp(prefix="ssd-spyder-client-"))
os.environ["SSD_CLIENT_DIR"] = str(_CLIENT_DIR)
os.environ["SSD_DISCOVERY_INTERFACES"] = "127.0.0.1"
# Spyder's configuration and runtime files in a throwaway home of their own, not root's.
_SPYDER_HOME = Path(tempfile.mkdtemp(prefix="ssd-spyder-home-"))
os.environ["SPYDER_CONFDIR"] = str(_SPYDER_HOME / "config")
os.environ["SPYDER_PYTEST"] = "True"  # Spyder's own tests mode: a clean config, no restart prompt
os.environ["JUPYTER_RUNTIME_DIR"] = str(_SPYDER_HOME / "runtime")

import pytest  # noqa: E402
from conftest import require_root  # noqa: E402
from envfixtures import public_dir  # noqa: E402
from kerneltools import give_env  # noqa: E402
from spyderhost import SpyderWorld, announcing_system_daemon, unique_name  # noqa: E402
from users import users  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def world(qapp: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpyderWorld]:
    """Spyder with the plugin, a daemon announcing NAME on loopback, a user owning env "sci"."""
    require_root()
    from spyderwindow import spyder_window

    tmp = tmp_path_factory.mktemp("spyder-world")
    name = unique_name("spy")
    with users(1) as (alice,), public_dir() as where:
        prefix = give_env(alice, where)
        daemon = announcing_system_daemon(tmp / "daemon", name)
        try:
            with spyder_window() as window:
                yield SpyderWorld(window, daemon, name, alice, prefix, tmp, _CLIENT_DIR)
        finally:
            if daemon.process.poll() is None:
                daemon.stop_and_check()

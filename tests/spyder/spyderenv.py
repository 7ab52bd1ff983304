"""Imported first by each Spyder test module, before Spyder is: headless, a client directory (keys, known
hosts) and a Spyder configuration of this run's own, discovery on loopback only (once per run)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
CLIENT_DIR = Path(tempfile.mkdtemp(prefix="ssd-spyder-client-"))
os.environ["SSD_CLIENT_DIR"] = str(CLIENT_DIR)
os.environ["SSD_DISCOVERY_INTERFACES"] = "127.0.0.1"
_SPYDER_HOME = Path(tempfile.mkdtemp(prefix="ssd-spyder-home-"))
os.environ["SPYDER_CONFDIR"] = str(_SPYDER_HOME / "config")
os.environ["SPYDER_PYTEST"] = "True"  # Spyder's own test mode: a clean configuration, no restart prompt
os.environ["JUPYTER_RUNTIME_DIR"] = str(_SPYDER_HOME / "runtime")

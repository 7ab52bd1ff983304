"""What the Spyder plugin tests do again and again: open a console from the pane, list the user's kernels,
give the user an environment, add a host by address (trust, log in), and the plugin's own threads."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from envfixtures import list_in_environments_txt
from spyderdriver import click, submit_password, wait_ready
from spyderhost import SpyderWorld
from users import chown_tree

from ssd.client import Client
from ssd.replies import KernelDescription
from ssd.spyder.dialogs import LoginDialog, TrustDialog

__all__ = ["CONDA_STAND_IN", "add_host_by_address", "env_row", "kernels_of", "open_console", "own_env", "own_threads"]

CONDA_STAND_IN = """#!/usr/bin/python3
# A STAND-IN for conda (conda cannot be installed here): one line of progress, then it hangs.
import time
print("Collecting package metadata (repodata.json): done", flush=True)
time.sleep(600)
"""


def own_threads() -> list[threading.Thread]:
    """Threads of the plugin (its network loop) and of zeroconf (discovery), alive now."""
    return [t for t in threading.enumerate() if t.is_alive() and t.name.startswith(("ssd-spyder", "zeroconf"))]


def kernels_of(world: SpyderWorld) -> list[KernelDescription]:
    """The user's kernels on the host, asked through a client of the plugin's own key (logged in as the user)."""
    with Client(world.daemon.host, trust=True) as client:
        return client.kernel_list()


def open_console(world: SpyderWorld, qtbot: Any, env: str = "sci", host: str = "") -> Any:
    """Open a new console on *env* of *host* (the world's) from the pane and wait until it is ready."""
    pane, consoles = world.window.pane, world.window.plugin.consoles
    before = len(consoles.consoles)
    pane.select_host(host or world.name)
    qtbot.waitUntil(lambda: any(e.name == env for e in pane.envs), timeout=20000)
    pane.select_env(env)
    click(qtbot, pane.console_button)
    qtbot.waitUntil(lambda: len(consoles.consoles) > before, timeout=60000)
    console = consoles.consoles[-1]
    wait_ready(qtbot, console.client)
    return console


def own_env(world: SpyderWorld, prefix: Path) -> Path:
    """Give *prefix* to the user and list it in their environments.txt, as conda does."""
    chown_tree(prefix, world.user)
    list_in_environments_txt(world.user.home, prefix)
    chown_tree(world.user.home / ".conda", world.user)
    return prefix


def env_row(world: SpyderWorld, qtbot: Any, name: str) -> Any:
    """Refresh the pane and answer the row of environment *name*."""
    pane = world.window.pane
    pane.select_host(world.name)
    click(qtbot, pane.refresh_button)
    qtbot.waitUntil(lambda: any(e.name == name for e in pane.envs), timeout=20000)
    return next(e for e in pane.envs if e.name == name)


def add_host_by_address(world: SpyderWorld, qtbot: Any, address: str) -> None:
    """Add... with *address* typed into its dialog; trust the key shown; log in by password."""
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication, QInputDialog

    pane, controller = world.window.pane, world.window.plugin.controller

    def answer() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, QInputDialog):
            QTimer.singleShot(50, answer)
            return
        dialog.setTextValue(address)
        dialog.accept()

    QTimer.singleShot(0, answer)
    click(qtbot, pane.add_button)
    qtbot.waitUntil(lambda: isinstance(controller.dialog, TrustDialog) and controller.dialog.isVisible(), timeout=20000)
    click(qtbot, controller.dialog.trust_button)
    qtbot.waitUntil(lambda: isinstance(controller.dialog, LoginDialog) and controller.dialog.isVisible(), timeout=20000)
    submit_password(world, qtbot, controller.dialog, world.user.password, host=address)

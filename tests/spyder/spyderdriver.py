"""Driving the plugin like a user: click its buttons, answer its dialogs, run code in a console and read
the console and the Variable Explorer back. Waits are on conditions (``qtbot.waitUntil``), never sleeps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtCore import Qt
from spyderhost import SpyderWorld

from ssd.spyder.dialogs import LoginDialog, TrustDialog

__all__ = [
    "click",
    "console_text",
    "log_in",
    "namespace",
    "run",
    "screenshot",
    "wait_ready",
]

IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


def click(qtbot: Any, button: Any) -> None:
    """A left click, as the user would."""
    qtbot.mouseClick(button, Qt.LeftButton)


def screenshot(widget: Any, name: str) -> Path:
    """Save *widget* as docs/images/NAME.png (the docs show what the headless run drew)."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    path = IMAGES / f"{name}.png"
    assert widget.grab().save(str(path)), f"could not save {path}"
    return path


def log_in(world: SpyderWorld, qtbot: Any) -> None:
    """Connect, trust on first contact and log in by password, unless that happened already."""
    pane, controller = world.window.pane, world.window.plugin.controller
    info = controller.connected.get(world.name)
    if info is not None and info.user:
        return
    qtbot.waitUntil(lambda: world.name in pane.hosts, timeout=20000)
    pane.select_host(world.name)
    click(qtbot, pane.connect_button)
    qtbot.waitUntil(lambda: isinstance(controller.dialog, (TrustDialog, LoginDialog)), timeout=20000)
    if isinstance(controller.dialog, TrustDialog):
        click(qtbot, controller.dialog.trust_button)
        qtbot.waitUntil(lambda: isinstance(controller.dialog, LoginDialog), timeout=20000)
    submit_password(world, qtbot, controller.dialog, world.user.password)


def submit_password(world: SpyderWorld, qtbot: Any, dialog: LoginDialog, password: str, host: str = "") -> None:
    """Type the user's name and *password* and log in to *host* (the world's), waiting out a throttle the
    dialog reports."""
    controller = world.window.plugin.controller
    host = host or world.name
    for _attempt in range(5):
        dialog.user.setText(world.user.name)
        dialog.password.setText(password)
        click(qtbot, dialog.login_button)
        qtbot.waitUntil(lambda: dialog.login_button.isEnabled() or not dialog.isVisible(), timeout=40000)
        if not dialog.isVisible():
            break
        assert "wait" in dialog.error.text(), dialog.error.text()
        seconds = float(dialog.error.text().split("wait ")[1].split(" s")[0])
        qtbot.wait(int((seconds + 0.5) * 1000))  # the server said when to retry: that is the condition
    qtbot.waitUntil(lambda: bool(controller.connected[host].user), timeout=20000)


def wait_ready(qtbot: Any, client: Any) -> Any:
    """The console's shell once its Spyder kernel is ready (Spyder's own configuration sent)."""
    shell = client.shellwidget
    qtbot.waitUntil(lambda: shell.spyder_kernel_ready and shell._prompt_html is not None, timeout=60000)
    return shell


def console_text(shell: Any) -> str:
    """Everything the console shows."""
    return str(shell._control.toPlainText())


def run(qtbot: Any, shell: Any, code: str, expect: str, timeout: int = 30000) -> str:
    """Execute *code* in the console as if typed; wait until *expect* appears in it."""
    shell.execute(code)
    qtbot.waitUntil(lambda: expect in console_text(shell), timeout=timeout)
    return console_text(shell)


def namespace(world: SpyderWorld, shell: Any) -> dict[str, Any]:
    """What the Variable Explorer shows for the console's kernel."""
    browser = world.window.variables.get_widget().get_widget_for_shellwidget(shell)
    if browser is None or browser.editor is None:
        return {}
    data: dict[str, Any] = browser.editor.source_model.get_data()
    return data

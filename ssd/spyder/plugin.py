"""The Spyder plugin: a dockable "Remote machines" pane that gives consoles on ssd kernels.

Registered in the ``spyder.plugins`` entry-point group (pyproject), so Spyder
6.1+ loads it from its own environment after ``pip install "ssd[spyder]"``.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_runtime_dir
from qtpy.QtGui import QIcon
from spyder.api.plugin_registration.decorators import on_plugin_available
from spyder.api.plugins import Plugins, SpyderDockablePlugin

from ssd.spyder.backend import Backend
from ssd.spyder.consoles import ConsoleManager
from ssd.spyder.controller import Controller
from ssd.spyder.dialogs import ChoiceDialog
from ssd.spyder.pane import RemoteMachinesWidget

__all__ = ["SSDPlugin"]

LEASE = 60.0  # seconds a kernel outlives a Spyder that stopped renewing (plus the host's grace)


class SSDPlugin(SpyderDockablePlugin):
    """Find machines, log in, pick an environment and get a console, from Spyder's window."""

    NAME = "ssd_remote"
    REQUIRES = [Plugins.IPythonConsole]
    OPTIONAL: list[str] = []
    TABIFY = [Plugins.VariableExplorer]
    WIDGET_CLASS = RemoteMachinesWidget
    CONF_SECTION = NAME
    CONF_FILE = True
    CONF_VERSION = "1.0.0"
    CONF_DEFAULTS = [(NAME, {"on_close": "ask", "discovery": True})]

    def __init__(self, parent: Any = None, configuration: Any = None) -> None:
        super().__init__(parent, configuration)
        self.backend: Backend | None = None
        self.controller: Controller | None = None
        self.consoles: ConsoleManager | None = None
        self.quit_dialog: ChoiceDialog | None = None

    @staticmethod
    def get_name() -> str:
        """The pane's name in menus."""
        return "Remote machines"

    @staticmethod
    def get_description() -> str:
        """One line for Spyder's plugin list."""
        return "Consoles on your kernels on other machines (and this one), through ssd"

    @classmethod
    def get_icon(cls) -> QIcon:
        """The pane's icon."""
        return cls.create_icon("remote_server")

    def on_initialize(self) -> None:
        """Build the backend (its network thread), the console manager and the controller."""
        widget = self.get_widget()
        # Keys and known hosts: the client library's (SSD_CLIENT_DIR), shared with ssd-ctl.
        self.backend = Backend(importlib.metadata.version("spyder"))
        folder = Path(jupyter_runtime_dir()) / "ssd-spyder"
        self.consoles = ConsoleManager(self.backend, self._spec_of, folder, widget, self._status, self._setting)
        self.controller = Controller(widget, self.backend, self.consoles, LEASE)
        if self.get_conf("discovery"):
            self.backend.start_discovery(self.controller.host_changed)

    @on_plugin_available(plugin=Plugins.IPythonConsole)  # type: ignore[untyped-decorator]
    def on_ipyconsole_available(self) -> None:
        """Route the console plugin's restart for our consoles through ssd."""
        assert self.consoles is not None
        self.consoles.set_console_plugin(self.get_plugin(Plugins.IPythonConsole))

    def _spec_of(self, key: str) -> Any:
        assert self.controller is not None
        return self.controller.spec_of(key)

    def _status(self, text: str) -> None:
        self.get_widget().say(text)
        self.show_status_message(text, 8000)

    def _setting(self, name: str, value: Any = None) -> Any:
        """Read (or, with *value*, write) one of the plugin's settings (``self._conf`` is Spyder's)."""
        if value is None:
            return self.get_conf(name)
        self.set_conf(name, value)
        return value

    # -- quitting -----------------------------------------------------------------------

    def can_close(self) -> bool:
        """Quitting Spyder: list the ssd kernels this Spyder opened and ask what to do with them."""
        assert self.consoles is not None
        open_ = self.consoles.open_kernels()
        if not open_:
            return True
        listing = "\n".join(f"  {c.env} on {c.host_label} ({c.kernel_id[:8]})" for c in open_)
        dialog = ChoiceDialog(
            self.get_widget(),
            "Remote kernels",
            f"These kernels run on other machines for this Spyder:\n{listing}\n\n"
            "Shut them down, or leave them running to attach later?",
            [("shutdown", "Shut down"), ("keep", "Leave running"), ("cancel", "Cancel")],
        )
        self.quit_dialog = dialog
        dialog.exec_()  # Spyder's close asks synchronously; the network answers after this returns
        if dialog.chosen in ("", "cancel"):
            return False
        errors = self.consoles.end_all(dialog.chosen)
        for text in errors:
            self._status(f"not done: {text}")
        return True

    def on_close(self, cancelable: bool = False) -> None:
        """Stop the network thread (the kernels were dealt with in can_close)."""
        if self.backend is not None:
            self.backend.close()
            self.backend = None

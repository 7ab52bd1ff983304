"""A real Spyder for the tests: Spyder's plugin test window with the IPython console, the Variable
Explorer and the ssd plugin loaded from its ``spyder.plugins`` entry point, laid out to be seen."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QSplitter
from spyder.api.plugins.tests import MainWindowMock

__all__ = ["Window", "spyder_window"]


@dataclass
class Window:
    """The window and its plugins."""

    main: Any
    ipyconsole: Any
    variables: Any
    plugin: Any

    @property
    def pane(self) -> Any:
        """The Remote machines pane."""
        return self.plugin.get_widget()


def _entry_point_plugin() -> Any:
    """The plugin class as Spyder's main window finds it: through ssd's ``spyder.plugins`` entry point."""
    from spyder.app.find_plugins import find_external_plugins

    found = find_external_plugins()
    assert "ssd_remote" in found, f"ssd's spyder.plugins entry point is missing: {sorted(found)}"
    return found["ssd_remote"]


@contextmanager
def spyder_window() -> Iterator[Window]:
    """Build the window; unregister the plugins and reset Spyder's registry afterwards."""
    from spyder.api.plugin_registration.registry import PLUGIN_REGISTRY
    from spyder.config.manager import CONF
    from spyder.plugins.ipythonconsole.plugin import IPythonConsole
    from spyder.plugins.variableexplorer.plugin import VariableExplorer

    main = MainWindowMock()
    plugins = [main.register_plugin(cls) for cls in (IPythonConsole, VariableExplorer)]
    # An external plugin, as Spyder's main window registers one: its own config file is registered by the
    # registry, so the plugin must not register it again (the test window's register_plugin would).
    plugin = PLUGIN_REGISTRY.register_plugin(main, _entry_point_plugin(), external=True)
    plugin._register(omit_conf=True)
    plugins.append(plugin)
    window = Window(main, *plugins)
    splitter = QSplitter(Qt.Horizontal)
    splitter.addWidget(window.pane)
    splitter.addWidget(window.ipyconsole.get_widget())
    splitter.addWidget(window.variables.get_widget())
    main.setCentralWidget(splitter)
    main.resize(1500, 800)
    main.show()
    try:
        yield window
    finally:
        # Kernels a failed test left open: shut down here, or closing would ask the quit question.
        errors = window.plugin.consoles.end_all("shutdown")
        assert not errors, errors
        for plugin in reversed(plugins):
            main.unregister_plugin(plugin)
        main.close()
        CONF.reset_manager()
        PLUGIN_REGISTRY.reset()

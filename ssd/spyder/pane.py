"""The "Remote machines" pane: hosts, login, environments with their verdict, kernels, new console.

Every action starts work in the backend and returns at once; answers arrive as
callbacks on the Qt thread and update the tables, a dialog or the status line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)
from spyder.api.widgets.main_widget import PluginMainWidget

from ssd.spyder.models import EnvRow, HostRow, KernelRow

__all__ = ["RemoteMachinesWidget"]

HOST_COLUMNS = ["Machine", "Address", "Trust", "User", "OS", "CPUs", "Load", "Kernels"]
ENV_COLUMNS = ["Environment", "Kind", "Python", "spyder-kernels", "This Spyder"]
KERNEL_COLUMNS = ["Kernel", "Environment", "State", "Name"]


def _table(columns: list[str]) -> QTreeWidget:
    tree = QTreeWidget()
    tree.setHeaderLabels(columns)
    tree.setRootIsDecorated(False)
    tree.setUniformRowHeights(True)
    tree.setSelectionMode(QTreeWidget.SingleSelection)
    return tree


def _button(text: str, tip: str, slot: Callable[[], None]) -> QPushButton:
    button = QPushButton(text)
    button.setToolTip(tip)
    button.clicked.connect(lambda _checked=False: slot())
    return button


class RemoteMachinesWidget(PluginMainWidget):
    """The pane's widget; the plugin (``ssd.spyder.plugin``) connects its requests to the backend."""

    sig_host_selected = Signal(str)  # host key
    sig_connect_requested = Signal(str)
    sig_login_requested = Signal(str)
    sig_add_host_requested = Signal(str)
    sig_new_console_requested = Signal(str, str, str)  # host key, env prefix, cwd ("" = home)
    sig_install_requested = Signal(str, str)  # host key, env prefix
    sig_create_env_requested = Signal(str)
    sig_attach_requested = Signal(str, str)  # host key, kernel id
    sig_refresh_requested = Signal(str)

    def __init__(self, name: str, plugin: Any, parent: QWidget | None = None) -> None:
        super().__init__(name, plugin, parent)
        self.hosts: dict[str, HostRow] = {}
        self.users: dict[str, str] = {}
        self.envs: list[EnvRow] = []
        self.kernels: list[KernelRow] = []
        self.host_table = _table(HOST_COLUMNS)
        self.env_table = _table(ENV_COLUMNS)
        self.kernel_table = _table(KERNEL_COLUMNS)
        self.cwd = QLineEdit()
        self.cwd.setPlaceholderText("working directory on the machine (default: your home there)")
        self.waiting_box = QVBoxLayout()  # a line per start waiting for its Slurm job (ssd.spyder.jobstarts)
        self.status = QLabel("Looking for machines on the network...")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.host_table.itemSelectionChanged.connect(self._host_changed)
        self.host_table.itemDoubleClicked.connect(lambda *_: self._emit_host(self.sig_connect_requested))
        self.env_table.itemDoubleClicked.connect(lambda *_: self._new_console())
        self.kernel_table.itemDoubleClicked.connect(lambda *_: self._attach())
        self.add_button = _button("Add...", "Add a machine by name or address", self._add_host)
        self.connect_button = _button(
            "Connect", "Verify the machine's key and log in", lambda: self._emit_host(self.sig_connect_requested)
        )
        self.login_button = _button(
            "Log in...", "Log in with a password", lambda: self._emit_host(self.sig_login_requested)
        )
        self.console_button = _button("New console", "An IPython console in this environment", self._new_console)
        self.install_button = _button(
            "Install spyder-kernels", "Install the spyder-kernels this Spyder needs", self._install
        )
        self.create_button = _button(
            "New environment...", "Create an environment", lambda: self._emit_host(self.sig_create_env_requested)
        )
        self.attach_button = _button("Attach", "A console on this running kernel", self._attach)
        self.refresh_button = _button(
            "Refresh", "List environments and kernels again", lambda: self._emit_host(self.sig_refresh_requested)
        )
        self._lay_out()

    def _lay_out(self) -> None:
        def row(*widgets: QWidget) -> QHBoxLayout:
            line = QHBoxLayout()
            for widget in widgets:
                line.addWidget(widget)
            line.addStretch(1)
            return line

        hosts = QWidget()
        top = QVBoxLayout(hosts)
        top.addWidget(self.host_table)
        top.addLayout(row(self.add_button, self.connect_button, self.login_button, self.refresh_button))
        envs = QWidget()
        middle = QVBoxLayout(envs)
        middle.addWidget(self.env_table)
        middle.addWidget(self.cwd)
        middle.addLayout(row(self.console_button, self.install_button, self.create_button))
        middle.addLayout(self.waiting_box)
        kernels = QWidget()
        bottom = QVBoxLayout(kernels)
        bottom.addWidget(self.kernel_table)
        bottom.addLayout(row(self.attach_button))
        splitter = QSplitter(Qt.Vertical)
        for part in (hosts, envs, kernels):
            splitter.addWidget(part)
        layout = QVBoxLayout()
        layout.addWidget(splitter)
        layout.addWidget(self.status)
        self.setLayout(layout)

    # -- PluginMainWidget ---------------------------------------------------------------

    def get_title(self) -> str:
        """The dock's title."""
        return "Remote machines"

    def setup(self) -> None:
        """No toolbar actions: the pane's buttons are its actions."""

    def update_actions(self) -> None:
        """Nothing to update."""

    # -- hosts --------------------------------------------------------------------------

    def current_host(self) -> str | None:
        """The selected machine's key."""
        items = self.host_table.selectedItems()
        return str(items[0].data(0, Qt.UserRole)) if items else None

    def select_host(self, key: str) -> None:
        """Select the machine *key* (as a click would)."""
        for index in range(self.host_table.topLevelItemCount()):
            item = self.host_table.topLevelItem(index)
            if item.data(0, Qt.UserRole) == key:
                self.host_table.setCurrentItem(item)

    def set_host(self, row: HostRow) -> None:
        """Add or update a machine's row."""
        self.hosts[row.key] = row
        item = self._host_item(row.key) or QTreeWidgetItem(self.host_table)
        trust = {"trusted": "trusted", "new": "new: not trusted yet", "mismatched": "KEY CHANGED"}.get(
            row.trust, row.trust
        )
        name = f"{row.key} (this machine)" if row.local else row.key
        values = [name, f"{row.spec.address or row.spec.host}:{row.spec.port}", trust, self.users.get(row.key, "")]
        values += [row.os, row.cpus, row.load, row.kernels]
        for column, value in enumerate(values):
            item.setText(column, value)
        item.setData(0, Qt.UserRole, row.key)
        if row.trust == "mismatched":
            item.setForeground(2, Qt.red)
        if self.host_table.currentItem() is None:
            self.host_table.setCurrentItem(item)

    def remove_host(self, key: str) -> None:
        """A machine went away (its announcement ended)."""
        item = self._host_item(key)
        if item is not None:
            self.host_table.takeTopLevelItem(self.host_table.indexOfTopLevelItem(item))
        self.hosts.pop(key, None)

    def set_user(self, key: str, user: str) -> None:
        """Show who we are logged in as on the machine."""
        self.users[key] = user
        if key in self.hosts:
            self.set_host(self.hosts[key])

    def _host_item(self, key: str) -> QTreeWidgetItem | None:
        for index in range(self.host_table.topLevelItemCount()):
            item = self.host_table.topLevelItem(index)
            if item.data(0, Qt.UserRole) == key:
                return item
        return None

    def _host_changed(self) -> None:
        key = self.current_host()
        self.set_envs([])
        self.set_kernels([])
        if key is not None:
            self.sig_host_selected.emit(key)

    def _emit_host(self, signal: Any) -> None:
        key = self.current_host()
        if key is None:
            self.say("Select a machine first (or add one by name or address).")
            return
        signal.emit(key)

    def _add_host(self) -> None:
        text, ok = QInputDialog.getText(self, "Add a machine", "Name or address, with :port if not the default:")
        if ok and text.strip():
            self.sig_add_host_requested.emit(text.strip())

    # -- environments and kernels -------------------------------------------------------

    def set_envs(self, envs: list[EnvRow]) -> None:
        """Show the environments and whether each can serve this Spyder."""
        self.envs = envs
        self.env_table.clear()
        for env in envs:
            verdict = "yes" if env.verdict.ok else f"no: {env.verdict.reason}"
            item = QTreeWidgetItem(self.env_table, [env.name, env.kind, env.python, env.spyder_kernels, verdict])
            item.setData(0, Qt.UserRole, env.prefix)
            item.setToolTip(0, env.prefix)
            if not env.verdict.ok:
                item.setForeground(4, Qt.darkYellow)
        for column in range(len(ENV_COLUMNS)):
            self.env_table.resizeColumnToContents(column)

    def current_env(self) -> EnvRow | None:
        """The selected environment."""
        items = self.env_table.selectedItems()
        if not items:
            return None
        prefix = items[0].data(0, Qt.UserRole)
        return next((e for e in self.envs if e.prefix == prefix), None)

    def select_env(self, name: str) -> None:
        """Select the environment called *name*."""
        for index in range(self.env_table.topLevelItemCount()):
            item = self.env_table.topLevelItem(index)
            if item.text(0) == name:
                self.env_table.setCurrentItem(item)

    def set_kernels(self, kernels: list[KernelRow]) -> None:
        """Show the user's running kernels on the machine."""
        self.kernels = kernels
        self.kernel_table.clear()
        for kernel in kernels:
            state = f"{kernel.state} (job {kernel.job_id})" if kernel.job_id else kernel.state
            item = QTreeWidgetItem(self.kernel_table, [kernel.kernel_id[:8], kernel.env, state, kernel.name])
            item.setData(0, Qt.UserRole, kernel.kernel_id)

    def select_kernel(self, kernel_id: str) -> None:
        """Select the kernel *kernel_id*."""
        for index in range(self.kernel_table.topLevelItemCount()):
            item = self.kernel_table.topLevelItem(index)
            if item.data(0, Qt.UserRole) == kernel_id:
                self.kernel_table.setCurrentItem(item)

    def _new_console(self) -> None:
        key, env = self.current_host(), self.current_env()
        if key is None or env is None:
            self.say("Select a machine and one of your environments there.")
            return
        if not env.verdict.ok:
            answer = QMessageBox.question(
                self,
                "Environment cannot serve this Spyder",
                f"{env.name}: {env.verdict.reason}.\n\nInstall {env.verdict.fix} into it now?",
            )
            if answer == QMessageBox.Yes:
                self.sig_install_requested.emit(key, env.prefix)
            return
        self.sig_new_console_requested.emit(key, env.prefix, self.cwd.text().strip())

    def _install(self) -> None:
        key, env = self.current_host(), self.current_env()
        if key is None or env is None:
            self.say("Select a machine and the environment to install spyder-kernels into.")
            return
        self.sig_install_requested.emit(key, env.prefix)

    def _attach(self) -> None:
        key = self.current_host()
        items = self.kernel_table.selectedItems()
        if key is None or not items:
            self.say("Select one of your running kernels to attach a console to it.")
            return
        self.sig_attach_requested.emit(key, str(items[0].data(0, Qt.UserRole)))

    def add_waiting(self, line: QWidget) -> None:
        """Show a start that waits for its Slurm job (with its Cancel)."""
        self.waiting_box.addWidget(line)

    def remove_waiting(self, line: QWidget) -> None:
        """The start ended (ready, refused or cancelled)."""
        self.waiting_box.removeWidget(line)
        line.deleteLater()

    # -- status -------------------------------------------------------------------------

    def say(self, text: str) -> None:
        """Show a status line in the pane (and Spyder's status bar)."""
        self.status.setText(text)

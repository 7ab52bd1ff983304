"""The plugin's dialogs: trust on first contact, login, new environment, progress, closing and quitting.

They are opened with ``open()`` (window-modal, never a nested event loop that
would stall the network callbacks) and report through Qt signals.
"""

from __future__ import annotations

import getpass

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

__all__ = ["ChoiceDialog", "CreateEnvDialog", "LoginDialog", "ProgressDialog", "TrustDialog"]


class TrustDialog(QDialog):
    """First contact: show the server's fingerprint and ask whether to trust it."""

    def __init__(self, parent: QWidget | None, host: str, fingerprint: str) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Trust {host}?")
        text = (
            f"<p>This is the first connection to <b>{host}</b>.</p>"
            f"<p>Its key fingerprint is<br><tt>{fingerprint}</tt></p>"
            "<p>Compare it with the one your administrator gave you (<tt>ssd init</tt> printed it on that machine). "
            "Trust it only if they match.</p>"
        )
        self.label = QLabel(text)
        self.label.setWordWrap(True)
        buttons = QDialogButtonBox()
        self.trust_button = buttons.addButton("Trust", QDialogButtonBox.AcceptRole)
        self.cancel_button = buttons.addButton(QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.label)
        layout.addWidget(buttons)


class LoginDialog(QDialog):
    """User name (default: the local one), password, and "log in by key from now on"."""

    submitted = Signal(str, str, bool)  # user, password, copy_id

    def __init__(self, parent: QWidget | None, host: str, user: str | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Log in to {host}")
        self.user = QLineEdit(user or getpass.getuser())
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.Password)
        self.copy_id = QCheckBox("Log in by key from now on (no password next time)")
        self.copy_id.setChecked(True)
        self.error = QLabel("")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #d04040")
        buttons = QDialogButtonBox()
        self.login_button = buttons.addButton("Log in", QDialogButtonBox.AcceptRole)
        buttons.addButton(QDialogButtonBox.Cancel)
        buttons.accepted.connect(self._submit)
        buttons.rejected.connect(self.reject)
        form = QFormLayout()
        form.addRow("User name", self.user)
        form.addRow("Password", self.password)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.copy_id)
        layout.addWidget(self.error)
        layout.addWidget(buttons)

    def _submit(self) -> None:
        self.error.setText("")
        self.login_button.setEnabled(False)
        self.submitted.emit(self.user.text().strip(), self.password.text(), self.copy_id.isChecked())

    def failed(self, text: str) -> None:
        """The login was refused: say why and let the user try again."""
        self.password.clear()
        self.error.setText(text)
        self.login_button.setEnabled(True)


class CreateEnvDialog(QDialog):
    """Name, Python version and packages of a new environment (spyder-kernels is added)."""

    submitted = Signal(str, str, list)  # name, python, packages

    def __init__(self, parent: QWidget | None, host: str) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"New environment on {host}")
        self.name = QLineEdit()
        self.python = QLineEdit()
        self.python.setPlaceholderText("the host's python3")
        self.packages = QLineEdit()
        self.packages.setPlaceholderText("numpy pandas ...")
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self._submit)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("Name", self.name)
        form.addRow("Python", self.python)
        form.addRow("Packages", self.packages)
        form.addRow(QLabel("The spyder-kernels this Spyder needs is installed too."))
        form.addRow(buttons)

    def _submit(self) -> None:
        self.submitted.emit(self.name.text().strip(), self.python.text().strip(), self.packages.text().split())
        self.accept()


class ProgressDialog(QDialog):
    """A long environment operation: the tool's last line, a bar fed by progress events, and Cancel."""

    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None, title: str) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.phase = QLabel("starting")
        self.line = QLabel("")
        self.line.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self._cancel)
        self.setMinimumWidth(480)  # room for the tool's line, which wraps
        layout = QVBoxLayout(self)
        for widget in (self.phase, self.bar, self.line, self.cancel_button):
            layout.addWidget(widget)

    def _cancel(self) -> None:
        self.cancel_button.setEnabled(False)
        self.phase.setText("cancelling")
        self.cancel_requested.emit()

    def show_progress(self, phase: str, percent: float | None, line: str) -> None:
        """One progress event."""
        self.phase.setText(phase)
        if percent is not None:
            self.bar.setRange(0, 100)
            self.bar.setValue(int(percent))
        if line:
            self.line.setText(line[-300:])


class ChoiceDialog(QDialog):
    """A question with named answers and an optional "remember" box; ``chosen`` is the answer's key."""

    answered = Signal(str, bool)  # answer key, remember

    def __init__(
        self, parent: QWidget | None, title: str, text: str, answers: list[tuple[str, str]], remember: str = ""
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.chosen = ""
        label = QLabel(text)
        label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(label)
        self.remember = QCheckBox(remember)
        self.remember.setVisible(bool(remember))
        layout.addWidget(self.remember)
        buttons = QDialogButtonBox()
        self.buttons: dict[str, QPushButton] = {}
        for key, caption in answers:
            button = buttons.addButton(caption, QDialogButtonBox.ActionRole)
            button.clicked.connect(lambda _checked=False, k=key: self._answer(k))
            self.buttons[key] = button
        layout.addWidget(buttons)

    def _answer(self, key: str) -> None:
        self.chosen = key
        self.answered.emit(key, self.remember.isChecked())
        self.accept()

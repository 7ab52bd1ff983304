"""Where a new console's kernel runs on a cluster's login node: this machine, or a Slurm job with resources.

``StartDialog`` opens only for a host that offers Slurm placement (``server_info``); its fields start at
the host's defaults, the host checks them and a refusal (a limit, Slurm's own words) is shown in the
dialog. ``QueuedStart`` is the pane's line for a start waiting for its job, with Cancel.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ssd.spyder.models import SlurmHost

__all__ = ["QueuedStart", "StartDialog"]

MOST = 100000  # the protocol's bound on cpus (the host's own limit, if any, is told by the host)


class StartDialog(QDialog):
    """This machine, or a Slurm job: partition (the host's list), time, cpus, memory, gpus."""

    submitted = Signal(object)  # None: this machine; a dict of Slurm options: a job

    def __init__(self, parent: QWidget | None, host: str, env: str, offer: SlurmHost) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"New console in {env} on {host}")
        self.here = QRadioButton(f"On {host} itself")
        self.job = QRadioButton("In a Slurm job (waits while Slurm queues it)")
        self.job.setChecked(True)
        self.partition = QComboBox()
        self.partition.setEditable(not offer.partitions)  # empty list: any partition may be named
        self.partition.addItems(list(offer.partitions) or [offer.default_partition])
        if offer.default_partition:
            self.partition.setCurrentText(offer.default_partition)
        if self.partition.isEditable():
            self.partition.lineEdit().setPlaceholderText("Slurm's default")
        self.time = QLineEdit(offer.default_time)
        self.time.setPlaceholderText("90, 1:30:00, 2-12")
        self.cpus = _spin(1, offer.max_cpus or MOST, offer.default_cpus)
        self.mem = QLineEdit(offer.default_mem)
        self.mem.setPlaceholderText("Slurm's default (4G, 512M)")
        self.gpus = _spin(0, offer.max_gpus, 0)
        self.error = QLabel("")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #d04040")
        buttons = QDialogButtonBox()
        self.start_button = buttons.addButton("Start", QDialogButtonBox.AcceptRole)
        buttons.addButton(QDialogButtonBox.Cancel)
        buttons.accepted.connect(self._submit)
        buttons.rejected.connect(self.reject)
        self.here.toggled.connect(self._placement_changed)
        form = QFormLayout()
        for label, field in (("Partition", self.partition), ("Time limit", self.time), ("CPUs", self.cpus)):
            form.addRow(label, field)
        form.addRow("Memory", self.mem)
        form.addRow("GPUs", self.gpus)
        layout = QVBoxLayout(self)
        for widget in (self.here, self.job):
            layout.addWidget(widget)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(buttons)

    def _placement_changed(self) -> None:
        for field in (self.partition, self.time, self.cpus, self.mem, self.gpus):
            field.setEnabled(self.job.isChecked())

    def options(self) -> dict[str, Any]:
        """kernel_start's Slurm options as typed (empty fields: the host's default)."""
        given: dict[str, Any] = {
            "partition": self.partition.currentText().strip(),
            "time": self.time.text().strip(),
            "mem": self.mem.text().strip(),
        }
        chosen = {key: value for key, value in given.items() if value}
        return chosen | {"cpus": self.cpus.value(), "gpus": self.gpus.value()}

    def _submit(self) -> None:
        self.error.setText("")
        if self.here.isChecked():
            self.submitted.emit(None)
            self.accept()
            return
        self.start_button.setEnabled(False)
        self.error.setText("submitting...")
        self.submitted.emit(self.options())

    def failed(self, text: str) -> None:
        """The host refused the job (a limit, or Slurm's words): say why and let the user change it."""
        self.error.setText(text)
        self.start_button.setEnabled(True)


def _spin(low: int, high: int, value: int) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, max(low, high))
    box.setValue(value)
    return box


class QueuedStart(QWidget):
    """The pane's line for one start in a Slurm job: what the host says of it (queued, why), and Cancel."""

    cancel_requested = Signal()

    def __init__(self, title: str) -> None:
        super().__init__()
        self.title = title
        self.label = QLabel(f"{title}: submitting...")
        self.label.setWordWrap(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Remove the job from Slurm's queue (scancel)")
        self.cancel_button.clicked.connect(self._cancel)
        line = QHBoxLayout(self)
        line.setContentsMargins(0, 0, 0, 0)
        line.addWidget(self.label, 1)
        line.addWidget(self.cancel_button)

    def show_state(self, text: str) -> None:
        """The host's latest word on the job."""
        self.label.setText(f"{self.title}: {text}")

    def _cancel(self) -> None:
        self.cancel_button.setEnabled(False)
        self.label.setText(f"{self.title}: cancelling...")
        self.cancel_requested.emit()

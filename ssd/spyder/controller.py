"""What the pane's buttons do: connect and trust, log in, list, install, start and attach.

The controller connects the pane's requests to the backend, opens the dialogs
and hands started kernels to the console manager. It holds no socket and never
waits: each step ends in a callback on the Qt thread.
"""

from __future__ import annotations

import getpass
from dataclasses import replace
from typing import Any

from qtpy.QtWidgets import QMessageBox

from ssd.client.hostspec import HostSpec
from ssd.errors import ErrorCode, RemoteError, ServerKeyMismatch, ServerUntrusted, SSDError
from ssd.spyder.advice import advice
from ssd.spyder.backend import Backend, parse_host
from ssd.spyder.consoles import ConsoleManager
from ssd.spyder.dialogs import CreateEnvDialog, LoginDialog, ProgressDialog, TrustDialog
from ssd.spyder.jobstarts import JobStarts
from ssd.spyder.models import ConnectInfo, EnvRow, HostRow, KernelRow, Progress, StartedKernel
from ssd.spyder.pane import RemoteMachinesWidget

__all__ = ["Controller"]


class Controller:
    """Glue between the pane, the backend, the dialogs and the consoles."""

    def __init__(self, pane: RemoteMachinesWidget, backend: Backend, consoles: ConsoleManager, lease: float) -> None:
        self.pane = pane
        self.backend = backend
        self.consoles = consoles
        self.lease = lease
        self.dialog: Any = None  # the dialog open now (tests and screenshots reach it here)
        self.connected: dict[str, ConnectInfo] = {}
        pane.sig_host_selected.connect(self.host_selected)
        pane.sig_connect_requested.connect(self.connect)
        pane.sig_login_requested.connect(lambda key: self.ask_login(key, ""))
        pane.sig_add_host_requested.connect(self.add_host)
        pane.sig_refresh_requested.connect(self.refresh)
        pane.sig_new_console_requested.connect(self.new_console)
        pane.sig_install_requested.connect(self.install)
        pane.sig_create_env_requested.connect(self.ask_create)
        pane.sig_attach_requested.connect(self.attach)
        self.jobs = JobStarts(pane, backend, consoles, lease, self._show)

    def spec_of(self, key: str) -> HostSpec | None:
        """Where the machine *key* is now (discovery may have moved it to a new port)."""
        row = self.pane.hosts.get(key)
        return row.spec if row else None

    def _label(self, key: str) -> str:
        return key.split(":")[0]

    # -- hosts --------------------------------------------------------------------------

    def host_changed(self, kind: str, row: HostRow) -> None:
        """Discovery saw a machine appear, change or go."""
        if kind == "removed":
            if row.key not in {c.host_key for c in self.consoles.consoles}:
                self.pane.remove_host(row.key)
            self.pane.say(f"{row.key} stopped announcing itself")
            return
        old = self.pane.hosts.get(row.key)
        self.pane.set_host(row)
        if old is not None and old.spec != row.spec:  # the daemon came back on a new port (restarted)
            self.consoles.host_back(row.key)

    def add_host(self, text: str) -> None:
        """A machine typed by name or address (checked when connecting)."""
        try:
            spec = parse_host(text)
        except (SSDError, ValueError) as exc:
            self.pane.say(f"{text!r} is not a machine name or address: {exc}")
            return
        self.pane.set_host(HostRow(key=text, spec=spec, trust="unknown", discovered=False))
        self.pane.select_host(text)
        self.connect(text)

    def host_selected(self, key: str) -> None:
        """A machine was chosen: if we are logged in there, list its environments and kernels."""
        if key in self.connected and self.connected[key].user:
            self.refresh(key)

    def connect(self, key: str) -> None:
        """Verify the machine's key (asking to trust it on first contact), then log in by key if we can."""
        spec = self.spec_of(key)
        if spec is None:
            return
        self.pane.say(f"Connecting to {key}...")
        self.backend.connect(spec, lambda info, error: self._connected(key, spec, info, error))

    def _connected(self, key: str, spec: HostSpec, info: ConnectInfo | None, error: BaseException | None) -> None:
        if isinstance(error, ServerUntrusted):
            self._ask_trust(key, spec, error)
            return
        if isinstance(error, ServerKeyMismatch):
            self.pane.say(f"{key}: SERVER KEY CHANGED. Nothing was sent.")
            QMessageBox.critical(self.pane, f"{key}: server key changed", advice(error, key))
            return
        if error is not None or info is None:
            self.pane.say(f"{key}: {advice(error or Exception(), key)}")
            return
        self.connected[key] = info
        row = self.pane.hosts.get(key)
        if row is not None:
            self.pane.set_host(_with_status(row, info))
        if info.user:
            self._logged_in(key, info.user)
        else:
            self._key_login(key, spec)

    def _ask_trust(self, key: str, spec: HostSpec, error: ServerUntrusted) -> None:
        dialog = TrustDialog(self.pane, key, error.fingerprint)
        dialog.accepted.connect(
            lambda: self.backend.trust(spec, error.public_key, lambda i, e: self._connected(key, spec, i, e))
        )
        dialog.rejected.connect(lambda: self.pane.say(f"{key} was not trusted; nothing was sent to it."))
        self._show(dialog)

    def _key_login(self, key: str, spec: HostSpec) -> None:
        """Try this client's key (an authorized key logs in without a prompt); else ask for a password."""
        user = getpass.getuser()

        def done(bound: str | None, error: BaseException | None) -> None:
            if error is None and bound:
                self._logged_in(key, bound)
            elif isinstance(error, RemoteError) and error.code in (ErrorCode.AUTH_FAILED, ErrorCode.NOT_AUTHORIZED):
                self.ask_login(key, "")
            else:
                self.ask_login(key, advice(error or Exception(), key))

        self.backend.login(spec, user, None, False, done)

    def ask_login(self, key: str, why: str) -> None:
        """The login dialog (user name defaults to the local one)."""
        spec = self.spec_of(key)
        if spec is None:
            return
        dialog = LoginDialog(self.pane, key)
        if why:
            dialog.failed(why)

        def submitted(user: str, password: str, copy_id: bool) -> None:
            if not password:
                dialog.failed("Type your password on that machine.")
                return
            self.backend.login(spec, user, password, copy_id, lambda b, e: self._login_answer(key, dialog, b, e))

        dialog.submitted.connect(submitted)
        self._show(dialog)

    def _login_answer(self, key: str, dialog: LoginDialog, bound: str | None, error: BaseException | None) -> None:
        if error is not None or not bound:
            dialog.failed(advice(error or Exception(), key))
            return
        dialog.accept()
        self._logged_in(key, bound)

    def _logged_in(self, key: str, user: str) -> None:
        info = self.connected.get(key)
        if info is not None:
            self.connected[key] = replace(info, user=user)
        self.pane.set_user(key, user)
        self.pane.say(f"Logged in to {key} as {user}.")
        if self.pane.current_host() == key:
            self.refresh(key)

    # -- environments -------------------------------------------------------------------

    def refresh(self, key: str) -> None:
        """List the machine's environments (with this Spyder's verdict) and the user's kernels."""
        spec = self.spec_of(key)
        if spec is None:
            return

        def envs(rows: list[EnvRow] | None, error: BaseException | None) -> None:
            if error is not None:
                self.pane.say(f"{key}: {advice(error, key)}")
            elif self.pane.current_host() == key:
                self.pane.set_envs(rows or [])

        def kernels(rows: list[KernelRow] | None, error: BaseException | None) -> None:
            if error is None and self.pane.current_host() == key:
                self.pane.set_kernels(rows or [])

        self.backend.envs(spec, envs)
        self.backend.kernels(spec, kernels)

    def install(self, key: str, prefix: str) -> None:
        """Install the spyder-kernels this Spyder needs into *prefix*, with progress and Cancel."""
        self._operation(key, "install", {"env": prefix, "packages": []}, f"Installing spyder-kernels into {prefix}")

    def ask_create(self, key: str) -> None:
        """Ask for a new environment's name, Python and packages, then create it."""
        dialog = CreateEnvDialog(self.pane, key)

        def submitted(name: str, python: str, packages: list[str]) -> None:
            content: dict[str, Any] = {"name": name, "packages": packages, "tool": "auto"}
            if python:
                content["python"] = python
            self._operation(key, "create", content, f"Creating {name} on {key}")

        dialog.submitted.connect(submitted)
        self._show(dialog)

    def _operation(self, key: str, kind: str, content: dict[str, Any], title: str) -> None:
        spec = self.spec_of(key)
        if spec is None:
            return
        dialog = ProgressDialog(self.pane, title)
        operation: list[str] = []

        def progress(step: Progress) -> None:
            if not operation:
                operation.append(step.operation)
            dialog.show_progress(step.phase, step.percent, step.line)

        def cancel() -> None:
            if operation:
                self.backend.env_cancel(spec, operation[0], lambda _r, _e: None)

        def done(end: Progress | None, error: BaseException | None) -> None:
            dialog.accept()
            if error is not None or end is None:
                self.pane.say(f"{title} failed: {advice(error or Exception(), key)}")
            elif end.state != "done":
                self.pane.say(f"{title}: {end.state}. {end.line}")
            else:
                self.pane.say(f"{title}: done.")
            self.refresh(key)

        dialog.cancel_requested.connect(cancel)
        self._show(dialog)
        self.backend.env_operation(spec, kind, content, progress, done)

    # -- consoles -----------------------------------------------------------------------

    def new_console(self, key: str, prefix: str, cwd: str) -> None:
        """A console in the environment: on a host that offers Slurm jobs, ask where first (``JobStarts``)."""
        info = self.connected.get(key)
        if info is not None and info.slurm is not None:
            self.jobs.ask(key, prefix, cwd, info.slurm, self.start_here)
        else:
            self.start_here(key, prefix, cwd)

    def start_here(self, key: str, prefix: str, cwd: str) -> None:
        """Start a Spyder kernel (leased) on the host itself and open a console on it."""
        spec = self.spec_of(key)
        if spec is None:
            return
        self.pane.say(f"Starting a kernel in {prefix} on {key}...")

        def started(kernel: StartedKernel | None, error: BaseException | None) -> None:
            if error is not None or kernel is None:
                self.pane.say(f"No console: {advice(error or Exception(), key)}")
                return
            self.consoles.open(key, self._label(key), kernel)
            self.pane.say(f"Console on {key} in {prefix} (kernel {kernel.kernel.kernel_id[:8]}).")

        self.backend.kernel_start(spec, prefix, cwd or None, self.lease, started)

    def attach(self, key: str, kernel_id: str) -> None:
        """A console on one of the user's running kernels (started elsewhere, or left running)."""
        spec = self.spec_of(key)
        if spec is None:
            return

        def found(kernel: StartedKernel | None, error: BaseException | None) -> None:
            if error is not None or kernel is None:
                self.pane.say(f"Cannot attach: {advice(error or Exception(), key)}")
                return
            if kernel.kernel.leased:
                self.backend.keep_lease(spec, kernel_id, self.lease)
            self.consoles.open(key, self._label(key), kernel)
            self.pane.say(f"Attached to kernel {kernel_id[:8]} on {key}.")

        self.backend.kernel_info(spec, kernel_id, found)

    def _show(self, dialog: Any) -> None:
        self.dialog = dialog
        dialog.open()


def _with_status(row: HostRow, info: ConnectInfo) -> HostRow:
    """The row with what server_info said (a machine added by hand has no announcement to read)."""
    status = info.status
    trust = "trusted" if row.trust in ("unknown", "new") else row.trust
    return replace(
        row,
        trust=trust,
        fingerprint=info.fingerprint,
        os=row.os or status.get("os", ""),
        cpus=row.cpus or status.get("cpus", ""),
        load=status.get("load", "") or row.load,
        kernels=status.get("kernels", "") or row.kernels,
    )

"""Spyder's IPython consoles on ssd kernels: open, interrupt, restart, close, reconnect.

Spyder treats a kernel it did not start as "external": its interrupt button,
its restart and its close know nothing of ssd. For the consoles this plugin
opens (and only those), the console's own methods are replaced on the
instance so that they go through ssd: interrupt by ``kernel_interrupt`` (a signal),
restart by ``kernel_restart`` and re-attaching (which sends Spyder's kernel
configuration to the new process, so the Variable Explorer is live again),
close asks whether to shut the kernel down. Spyder offers no hook for these;
an instance attribute keeps every other console untouched.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QWidget

from ssd.client.hostspec import HostSpec
from ssd.spyder.advice import advice
from ssd.spyder.backend import Backend
from ssd.spyder.dialogs import ChoiceDialog
from ssd.spyder.localend import LocalEnd, local_end
from ssd.spyder.models import StartedKernel

__all__ = ["ConsoleManager", "SSDConsole"]

log = logging.getLogger(__name__)


@dataclass
class SSDConsole:
    """One console this plugin opened on an ssd kernel."""

    host_key: str
    host_label: str
    env: str
    kernel_id: str
    connection: dict[str, Any]
    end: LocalEnd  # the connection file Spyder reads (and the in-process tunnel, if one was needed)
    client: Any  # Spyder's ClientWidget
    closing: bool = False


class ConsoleManager:
    """Opens and watches the plugin's consoles; *spec_of* gives a host's current address (it may move)."""

    def __init__(
        self,
        backend: Backend,
        spec_of: Callable[[str], HostSpec | None],
        folder: Path,
        parent: QWidget,
        status: Callable[[str], None],
        conf: Callable[..., Any],
    ) -> None:
        self.backend = backend
        self.spec_of = spec_of
        self.folder = folder
        self.parent = parent
        self.status = status
        self.conf = conf  # conf(name) reads, conf(name, value) writes the plugin's settings
        self.consoles: list[SSDConsole] = []
        self.ipyconsole: Any = None
        self.quitting = False
        self.pending_dialog: ChoiceDialog | None = None

    # -- Spyder's console plugin --------------------------------------------------------

    def set_console_plugin(self, ipyconsole: Any) -> None:
        """Take Spyder's IPython console plugin; its restart action is routed here for ssd consoles."""
        self.ipyconsole = ipyconsole
        widget = ipyconsole.get_widget()
        original = widget.restart_kernel

        def restart_kernel(client: Any = None, ask_before_restart: bool = True) -> None:
            console = self.console_of(client or widget.get_current_client())
            if console is None:
                original(client, ask_before_restart)
            else:
                self.restart(console)

        # The menu's and the toolbar's restart look the method up when triggered (a lambda), so this reaches them.
        widget.restart_kernel = restart_kernel

    def console_of(self, client: Any) -> SSDConsole | None:
        """The ssd console behind a Spyder client widget, if it is one."""
        return next((c for c in self.consoles if c.client is client), None)

    # -- open ---------------------------------------------------------------------------

    def open(self, host_key: str, host_label: str, started: StartedKernel) -> SSDConsole:
        """A console tab on *started*: CURVE keys in its connection file, the tab named env@host."""
        spec = self.spec_of(host_key)
        assert spec is not None
        kernel = started.kernel
        end = local_end(self.folder, spec, kernel.kernel_id, started.connection)
        client = self.ipyconsole.create_client_for_kernel(str(end.file), give_focus=True)
        env = Path(kernel.env).name or kernel.env
        client.given_name = f"{env}@{host_label}"
        console = SSDConsole(host_key, host_label, kernel.env, kernel.kernel_id, started.connection, end, client)
        self._hook(console)
        self.consoles.append(console)
        self.ipyconsole.get_widget().update_tabs_text()
        return console

    def _hook(self, console: SSDConsole) -> None:
        client = console.client
        shell = client.shellwidget
        # The kernel starts in the remote home or the chosen folder: Spyder's local cwd means nothing there.
        client._set_initial_cwd_in_kernel = lambda: None
        set_cwd = shell.set_cwd
        shell.set_cwd = lambda dirname=None, emit_cwd_change=False: set_cwd(None, False) if dirname is None else None
        shell.interrupt_kernel = lambda: self.interrupt(console)
        shutdown = client.shutdown

        def closed(is_last_client: bool, close_console: bool = False) -> None:
            shutdown(is_last_client, close_console)
            self._closed(console)

        client.shutdown = closed
        with contextlib.suppress(TypeError, RuntimeError):  # nothing connected
            shell.sig_restart_kernel.disconnect()
        shell.sig_restart_kernel.connect(lambda: self.restart(console))

    # -- the console's buttons ----------------------------------------------------------

    def _spec(self, console: SSDConsole) -> HostSpec | None:
        spec = self.spec_of(console.host_key)
        if spec is None:
            self.status(f"{console.host_label} is not in the list of machines any more: add it again to reach it.")
        return spec

    def interrupt(self, console: SSDConsole) -> None:
        """The stop button (or Ctrl+C): interrupt the running cell, by a SIGINT the host sends the kernel.

        Not through the comm as Spyder does for its own kernels: there the kernel's control thread signals its
        own process, Linux may hand the signal to that sending thread, and the main thread's ``time.sleep``
        is restarted unaware (CPython runs Python handlers in the main thread only), so the cell runs on. A
        signal from another process (the host's kernel worker) wakes the main thread itself.
        """
        shell = console.client.shellwidget
        shell._execute_queue = []
        shell._reading = False
        spec = self._spec(console)
        if spec is None:
            return

        def done(_reply: object, error: BaseException | None) -> None:
            if error is not None:
                self.status(f"could not interrupt the kernel on {console.host_label}: {advice(error)}")
            else:
                self.status(f"interrupt sent to the kernel on {console.host_label}")

        self.backend.kernel_interrupt(spec, console.kernel_id, done)

    def restart(self, console: SSDConsole) -> None:
        """Restart through ssd (same id and ports), then attach the console to the new process."""
        spec = self._spec(console)
        if spec is None:
            return
        console.client.shellwidget._append_plain_text("Restarting the kernel on the host...\n", before_prompt=True)

        def done(started: StartedKernel | None, error: BaseException | None) -> None:
            if error is not None or started is None:
                self.status(f"could not restart the kernel on {console.host_label}: {advice(error or Exception())}")
                return
            self._reattach(console, started, reconnect=False)

        self.backend.kernel_restart(spec, console.kernel_id, done)

    def _reattach(self, console: SSDConsole, started: StartedKernel, *, reconnect: bool) -> None:
        """Point the console at the kernel again (a restart, or ports that moved); Spyder sends its configuration."""
        from spyder.plugins.ipythonconsole.utils.kernel_handler import KernelHandler

        console.connection = started.connection
        spec = self.spec_of(console.host_key)
        assert spec is not None
        console.end.close()
        console.end = local_end(self.folder, spec, console.kernel_id, started.connection)
        handler = KernelHandler.from_connection_file(str(console.end.file))
        # shutdown_kernel=True shuts nothing down here (Spyder has no manager for an ssd kernel) and avoids the
        # QThread Spyder warns of when it is False (spyder-ide/spyder#23973).
        console.client.replace_kernel(handler, shutdown_kernel=True, clear=False, reconnect=reconnect)

    # -- close and quit -----------------------------------------------------------------

    def _closed(self, console: SSDConsole) -> None:
        """The tab was closed: shut the kernel down, or leave it running, as the user says (or said before)."""
        if console in self.consoles:
            self.consoles.remove(console)
        console.end.close()
        if self.quitting:
            return  # the quit dialog decided for every kernel at once
        remembered = str(self.conf("on_close") or "ask")
        if remembered in ("shutdown", "keep"):
            self._end(console, remembered)
            return
        dialog = ChoiceDialog(
            self.parent,
            "Close console",
            f"Shut the kernel down on {console.host_label}? ({console.env})\n\n"
            "Leave it running to attach to it later, from this or another computer.",
            [("shutdown", "Shut down"), ("keep", "Leave running")],
            remember="Remember my choice (Preferences can change it)",
        )
        dialog.answered.connect(lambda key, remember: self._answered(console, key, remember))
        self.pending_dialog = dialog
        dialog.open()

    def _answered(self, console: SSDConsole, key: str, remember: bool) -> None:
        if remember:
            self.conf("on_close", key)
        self._end(console, key)

    def _end(self, console: SSDConsole, how: str) -> None:
        spec = self._spec(console)
        if spec is None:
            return

        def done(_reply: object, error: BaseException | None) -> None:
            verb = "shut down" if how == "shutdown" else "left running"
            if error is not None:
                self.status(f"the kernel on {console.host_label} was not {verb}: {advice(error)}")
            else:
                self.status(f"kernel {console.kernel_id[:8]} on {console.host_label} {verb}")

        if how == "shutdown":
            self.backend.kernel_shutdown(spec, console.kernel_id, done)
        else:
            self.backend.kernel_detach(spec, console.kernel_id, done)

    def open_kernels(self) -> list[SSDConsole]:
        """The consoles open on ssd kernels (Spyder is quitting: the user is asked about these)."""
        return list(self.consoles)

    def end_all(self, how: str) -> list[str]:
        """Shut down (or detach) every console's kernel and wait; answers the errors, as sentences."""
        self.quitting = True
        targets = [(spec, c.kernel_id) for c in self.consoles if (spec := self.spec_of(c.host_key)) is not None]
        for console in self.consoles:
            console.end.close()
        self.consoles.clear()
        if how == "shutdown":
            return self.backend.shutdown_now(targets)
        return self.backend.detach_now(targets)

    def kernel_ended(self, kernel_id: str, text: str) -> None:
        """The host says a console's kernel ended by itself (its Slurm job ended): say why in that console."""
        for console in [c for c in self.consoles if c.kernel_id == kernel_id]:
            console.client.shellwidget._append_plain_text(f"\n{text}\n", before_prompt=True)

    # -- reconnect ----------------------------------------------------------------------

    def host_back(self, host_key: str) -> None:
        """The host answers again (maybe on a new port): re-attach its consoles whose kernel moved or was lost."""
        spec = self.spec_of(host_key)
        if spec is None:
            return
        for console in [c for c in self.consoles if c.host_key == host_key]:

            def done(started: StartedKernel | None, error: BaseException | None, console: SSDConsole = console) -> None:
                if error is not None or started is None:
                    log.info("ssd: %s not back yet: %s", console.kernel_id, error)
                    return
                if started.connection != console.connection or not console.client.is_kernel_active():
                    self._reattach(console, started, reconnect=True)
                    self.status(f"console {console.env}@{console.host_label} reconnected")

            self.backend.kernel_info(spec, console.kernel_id, done)

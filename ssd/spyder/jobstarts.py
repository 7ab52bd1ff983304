"""New consoles on a cluster's login node: ask where the kernel runs, follow a queued job, Cancel, its end.

The controller hands a new console here when the host offers Slurm placement. "This machine" goes back
to the controller's ordinary start; a Slurm job is started with ``Backend.kernel_start`` and a
``JobStart``: the dialog stays open until the host accepted the job (or shows the host's refusal), the
pane then shows a line per waiting start with the host's words (queued, job id, Slurm's reason) and
Cancel, and once the kernel is ready the console opens as for a local kernel. A console on a kernel in
a job is told when the job ends, with Slurm's reason.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ssd.errors import RemoteError
from ssd.spyder.advice import advice
from ssd.spyder.backend import Backend
from ssd.spyder.consoles import ConsoleManager
from ssd.spyder.jobwait import JobStart
from ssd.spyder.models import JobState, SlurmHost, StartedKernel
from ssd.spyder.pane import RemoteMachinesWidget
from ssd.spyder.slurmdialog import QueuedStart, StartDialog

__all__ = ["JobStarts"]

LocalStart = Callable[[str, str, str], None]  # host key, env prefix, cwd


class JobStarts:
    """Starts in Slurm jobs from the pane, and the ends of their consoles' jobs."""

    def __init__(
        self,
        pane: RemoteMachinesWidget,
        backend: Backend,
        consoles: ConsoleManager,
        lease: float,
        show: Callable[[Any], None],
    ) -> None:
        self.pane = pane
        self.backend = backend
        self.consoles = consoles
        self.lease = lease
        self.show = show  # opens a dialog where tests and screenshots reach it (Controller.dialog)
        self.waiting: dict[JobStart, QueuedStart] = {}
        self.in_jobs: set[str] = set()  # kernel ids of open consoles in jobs (read by the backend's loop)

    def ask(self, key: str, prefix: str, cwd: str, offer: SlurmHost, local: LocalStart) -> None:
        """Where should the kernel run? This machine (*local*), or a Slurm job with the resources chosen."""
        env = Path(prefix).name or prefix
        dialog = StartDialog(self.pane, key, env, offer)

        def submitted(options: dict[str, Any] | None) -> None:
            if options is None:
                local(key, prefix, cwd)
            else:
                self._start(key, prefix, cwd, JobStart(options), dialog)

        dialog.submitted.connect(submitted)
        self.show(dialog)

    def _start(self, key: str, prefix: str, cwd: str, job: JobStart, dialog: StartDialog) -> None:
        spec = self.pane.hosts[key].spec if key in self.pane.hosts else None
        if spec is None:
            return
        line = QueuedStart(f"{Path(prefix).name or prefix} on {key}")
        line.cancel_requested.connect(lambda: self._cancel(key, job))
        self.waiting[job] = line

        def on_state(state: JobState) -> None:
            if dialog.isVisible():  # the host took the job: the pane follows it from now on
                dialog.accept()
                self.pane.add_waiting(line)
            line.show_state(state.text)
            self.pane.say(f"{line.title}: {state.text}")

        def started(kernel: StartedKernel | None, error: BaseException | None) -> None:
            self.waiting.pop(job, None)
            self.pane.remove_waiting(line)
            if error is not None or kernel is None:
                self._failed(key, job, dialog, error or Exception())
                return
            if dialog.isVisible():
                dialog.accept()
            self.opened(key, kernel)

        self.pane.say(f"Submitting a Slurm job for a kernel in {prefix} on {key}...")
        self.backend.kernel_start(spec, prefix, cwd or None, self.lease, started, (job, on_state))

    def _failed(self, key: str, job: JobStart, dialog: StartDialog, error: BaseException) -> None:
        if job.cancelled:
            where = f"job {job.job_id}" if job.job_id else "its job"
            self.pane.say(f"Start cancelled: {where} removed from Slurm's queue (scancel).")
        elif dialog.isVisible() and isinstance(error, RemoteError):
            dialog.failed(advice(error, key))  # refused before the job ran: a limit, or Slurm's own words
        else:
            dialog.reject()
            self.pane.say(f"No console: {advice(error, key)}")

    def _cancel(self, key: str, job: JobStart) -> None:
        spec = self.pane.hosts[key].spec if key in self.pane.hosts else None
        if spec is None:
            return

        def done(kernel_id: str | None, error: BaseException | None) -> None:
            if error is not None:
                self.pane.say(f"Could not cancel: {advice(error, key)}")
            elif not kernel_id:
                self.pane.say("Cancelled before the host named the kernel: it is stopped once it does.")

        self.backend.cancel_start(spec, job, done)

    def opened(self, key: str, started: StartedKernel) -> None:
        """The job's kernel is ready: a console as for a local kernel, told when the job ends."""
        spec = self.pane.hosts[key].spec
        console = self.consoles.open(key, key.split(":")[0], started)
        self.in_jobs.add(console.kernel_id)
        self.backend.watch_ends(spec, self.in_jobs, self._ended)
        job = f" in job {started.kernel.job_id}" if started.kernel.job_id else ""
        self.pane.say(f"Console on {key}{job} (kernel {started.kernel.kernel_id[:8]}).")

    def _ended(self, state: JobState) -> None:
        """A console's job ended (its time limit, scancel, the node): say so in the console and the pane."""
        self.in_jobs.discard(state.kernel_id)
        self.consoles.kernel_ended(state.kernel_id, state.text)
        self.pane.say(f"Kernel {state.kernel_id[:8]}: {state.text}")

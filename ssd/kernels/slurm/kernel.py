"""A kernel in a Slurm job, as the kernel worker keeps it: submitted, queued, ready through its job's relay.

``ManagedKernel``'s lifecycle with the job in the place of a local process. The worker submits
``ssd.kernels.slurm.jobhost`` as the user (``sbatch --parsable``, no shell); while Slurm holds the job the
kernel is ``queued`` (events with Slurm's reason and the job id); once the job's relay wrote its endpoint
the worker's link connects to it over CURVE and the kernel is ``ready`` when it answers ``kernel_info``.
Shutdown is ``scancel``; interrupt is SIGINT through ``scancel --batch``; restart happens inside the same
allocation; a job that ends (time limit, ``scancel``, node failure) is a dead kernel with Slurm's reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import zmq
import zmq.asyncio

from ssd.errors import ErrorCode, SSDError
from ssd.kernels.link import KernelLink, KernelSilent, kernel_info_summary
from ssd.kernels.managed import KernelHooks, ManagedKernel
from ssd.kernels.record import KernelRecord, SlurmJob
from ssd.kernels.slurm.commands import Invocation, SlurmCommands, run
from ssd.kernels.slurm.jobfolder import find_submitted, prepare_job, start_failure
from ssd.kernels.slurm.jobhost import ENDPOINT_FILE, RESTART_FILE, read_private
from ssd.kernels.slurm.poller import JobPoller
from ssd.kernels.slurm.query import JobStatus, async_cancel, cancel, job_status
from ssd.kernels.slurm.states import KernelJobState, kernel_state
from ssd.kernels.slurm.submit import async_submit

__all__ = ["Placed", "SlurmKernel"]

log = logging.getLogger(__name__)

QUEUE_POLL = 1.0  # seconds between two squeue of a job not yet running (slurmctld starts jobs once a second)
WATCH_POLL = 2.0  # seconds between two squeue of a ready kernel's job
ENDPOINT_POLL = 0.05  # seconds between two looks for the job relay's endpoint.json (a stat, no Slurm call)


# Called once a job's relay is known, before "ready" goes out (the worker opens the login node's relay).
Placed = Callable[[ManagedKernel], None]


class SlurmKernel(ManagedKernel):
    """One kernel whose process is a Slurm job's; *login* is the address the job's relay binds towards."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        record: KernelRecord,
        hooks: KernelHooks,
        commands: SlurmCommands,
        login: str,
        on_placed: Placed,
        poller: JobPoller,
    ) -> None:
        super().__init__(ctx, record, hooks)
        self.commands = commands
        self.poller = poller  # one squeue per poll for all of the worker's jobs
        self.login = login
        self.on_placed = on_placed
        self.job_state: KernelJobState | None = None
        self.checked = 0.0  # time.time() of job_state
        self.generation = -1  # which start of the kernel inside the job the link reaches
        self._watcher: asyncio.Task[None] | None = None
        self._resuming: asyncio.Task[None] | None = None  # an adopted queued job's wait (see adopt)
        self._forgotten = False
        self._orphaned = False  # a start cut short by the worker's exit: its job is kept (see abandon)
        self._recorded = False  # the broker holds the record (then sbatch may run)

    @property
    def job(self) -> SlurmJob:
        """The kernel's job (a Slurm kernel's record always has one)."""
        assert self.record.job is not None
        return self.record.job

    @property
    def folder(self) -> Path:
        """The job's folder on the shared filesystem."""
        return Path(self.job.folder)

    def time_left(self) -> int | None:
        """Seconds left of the job's time limit, from its last squeue."""
        left = self.job_state.time_left if self.job_state is not None else None
        return None if left is None else max(0, round(left - (time.time() - self.checked)))

    # -- starting -----------------------------------------------------------------------

    async def start(self) -> dict[str, float]:
        """Submit the job, wait while it is queued, then for the kernel's kernel_info; return the timings."""
        began = time.monotonic()
        try:
            await self._submit()
            submitted = time.monotonic()
            running = await self._until_ready()
        except asyncio.CancelledError:  # the worker is going away: the job waits for the next one's adoption
            self._orphaned = self._recorded
            raise
        return {"submit": submitted - began, "queued": running - submitted, "ready": time.monotonic() - began}

    async def _until_ready(self) -> float:
        """From a submitted job to a ready kernel (queued and starting events on the way); when the job ran."""
        await self._wait_endpoint(0)
        running = time.monotonic()
        self.state = "starting"
        self.hooks.on_state(self, "starting", self.event_fields())
        await self._wait_ready()
        self.state = "ready"
        self.link.start_watching()
        self._watcher = asyncio.create_task(self._watch_job())
        self.hooks.on_state(self, "ready", self.event_fields())
        return running

    async def _submit(self) -> None:
        """job.json (0600) with the kernel and the link's keys, the record stored, then sbatch; the job id goes
        to the record. The record is stored first (job id 0: submitting), and the job's name carries the kernel
        id: a daemon that dies while sbatch runs leaves a record by which the next worker finds the job."""
        spec, keys = prepare_job(self.record, self.job, self.login)
        self.record = msgspec.structs.replace(self.record, connection={**self.record.connection, **keys})
        if self.hooks.save is not None:
            await self.hooks.save(self.record)
        else:
            self.hooks.on_record(self.kernel_id, self.record)
        self._recorded = True
        job_id = await async_submit(spec, self.commands)
        self._use_job(job_id)

    def _use_job(self, job_id: int) -> None:
        """The job's id into the record, and the record to the broker."""
        self.record = msgspec.structs.replace(self.record, job=msgspec.structs.replace(self.job, job_id=job_id))
        self.hooks.on_record(self.kernel_id, self.record)

    async def _wait_endpoint(self, generation: int) -> None:
        """Until the job's relay announced start *generation* of the kernel; queued events on the way."""
        asking: asyncio.Task[JobStatus] | None = None
        within = 0.0  # the first question at once, then one a QUEUE_POLL
        running_since: float | None = None
        try:
            while not self._endpoint_reached(generation):
                if asking is None:
                    asking = asyncio.create_task(self.poller.status(self.job.job_id, within))
                    within = QUEUE_POLL
                elif asking.done():
                    phase, asking = self._note(asking.result()), None
                    if phase == "starting" and running_since is None:
                        running_since = time.monotonic()
                if running_since is not None and time.monotonic() - running_since > self.hooks.start_timeout:
                    limit = self.hooks.start_timeout
                    raise self._failed(f"the job runs but its relay did not start within {limit:g} s")
                await asyncio.sleep(ENDPOINT_POLL)
        finally:
            if asking is not None:
                asking.cancel()

    def _endpoint_reached(self, generation: int) -> bool:
        """Whether the job's relay announced start *generation* (then the link follows it); a cancelled start raises."""
        if self.state in ("stopping", "gone"):
            raise SSDError("the start was cancelled", code=ErrorCode.KERNEL_START_FAILED)
        endpoint = self._read_endpoint()
        if endpoint is None or int(endpoint["generation"]) < generation:
            return False
        self._use_endpoint(endpoint)
        return True

    def _note(self, status: Any) -> str:
        """Take Slurm's word on the job: queued (an event when the reason changes), running, or ended."""
        state = kernel_state(status)
        changed = self.job_state is None or state.reason != self.job_state.reason
        self.job_state, self.checked = state, time.time()
        if state.phase == "dead":
            raise self._failed(f"the kernel's job ended before the kernel answered: {state.reason}")
        if state.phase == "queued" and self.state in ("starting", "queued") and (changed or self.state != "queued"):
            self.state = "queued"
            self.hooks.on_state(self, "queued", self.event_fields())
        return state.phase

    def _failed(self, reason: str) -> SSDError:
        return start_failure(self.folder, self.job.job_id, reason)

    def _read_endpoint(self) -> dict[str, Any] | None:
        try:
            return read_private(self.folder / ENDPOINT_FILE)
        except FileNotFoundError:
            return None

    def _use_endpoint(self, endpoint: dict[str, Any], *, placing: bool = True) -> None:
        """Point the link (and the record, which the login node's relay follows) at the job's relay; with
        *placing*, open the login node's relay now (adoption leaves that to the worker, which reopens it)."""
        self.generation = int(endpoint["generation"])
        ports = {f"{channel}_port": int(port) for channel, port in endpoint["ports"].items()}
        info = {**self.record.connection, "transport": "tcp", "ip": str(endpoint["ip"]), **ports}
        if info != self.record.connection:
            self.link.close()
            self.record = msgspec.structs.replace(self.record, connection=info)
            self.link = KernelLink(self.ctx, info)
            self.hooks.on_record(self.kernel_id, self.record)
            if placing:
                self.on_placed(self)

    async def _wait_ready(self) -> None:
        """kernel_info through the job's relay, or the job's end, whichever comes first."""
        asking = asyncio.create_task(
            self.link.request("shell", "kernel_info_request", {}, timeout=self.hooks.start_timeout)
        )
        ended = asyncio.create_task(self._job_end(QUEUE_POLL))
        try:
            await asyncio.wait({asking, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
        if asking.done() and asking.exception() is None:
            self.summary = kernel_info_summary(asking.result())
            self.link.execution_state = "idle"
            return
        asking.cancel()
        with contextlib.suppress(asyncio.CancelledError, KernelSilent):
            await asking
        if ended.done() and not ended.cancelled() and ended.exception() is None:
            raise self._failed(f"the kernel's job ended: {ended.result().reason}")
        raise self._failed(f"the kernel did not answer kernel_info within {self.hooks.start_timeout:g} s")

    async def _job_end(self, period: float) -> KernelJobState:
        """Ask the poller at once, then every *period* seconds, until the job ended; its last state."""
        within = 0.0
        while True:
            with contextlib.suppress(SSDError):  # one failed squeue is no verdict
                state = kernel_state(await self.poller.status(self.job.job_id, within))
                self.job_state, self.checked = state, time.time()
                if state.phase == "dead":
                    return state
            within = period

    async def _watch_job(self) -> None:
        state = await self._job_end(WATCH_POLL)
        self._exited.set()
        if self.state == "ready":
            self.state = "dead"
            self.hooks.on_state(self, "dead", {"exit_code": None, "reason": state.reason, **self.event_fields()})
            self._linger_dead()

    # -- adoption -----------------------------------------------------------------------

    def adopt(self) -> bool:
        """Take over a kernel by its job id: ready if its relay announced itself, else waited for again (a job
        still queued when the daemon restarted); False if Slurm says the job ended."""
        if not self.job.job_id and not self._find_submitted():
            return False
        try:
            state = kernel_state(job_status(self.job.job_id, self.commands))
        except SSDError:
            return False
        endpoint = self._read_endpoint()
        if state.phase == "dead":
            return False
        self.job_state, self.checked = state, time.time()
        if endpoint is None:
            self.state = "queued"
            self.hooks.on_state(self, "queued", self.event_fields())
            self._resuming = asyncio.create_task(self._resume_start())
            return True
        # A job found by name ran its relay while no worker watched: its record learns the endpoint here.
        self._use_endpoint(endpoint, placing=False)
        self.state = "ready"
        self.link.start_watching()
        self._watcher = asyncio.create_task(self._watch_job())
        return True

    def _find_submitted(self) -> bool:
        """A submission whose job id never reached the record (the daemon stopped during sbatch): its job, found
        by name, taken into the record; False when Slurm holds no such job."""
        job_id = find_submitted(self.kernel_id, self.commands)
        if job_id is not None:
            self._use_job(job_id)
        return job_id is not None

    async def _resume_start(self) -> None:
        """An adopted job not yet running: wait for it as a start would; dead (and forgotten) if it fails."""
        try:
            await self._until_ready()
        except SSDError as exc:
            if self.state in ("stopping", "gone"):  # shut down while queued: shutdown() said so
                return
            self.state = "dead"
            self.hooks.on_state(self, "dead", {"exit_code": None, "reason": exc.message.partition(";")[0]})
            self.forget()

    # -- operations ---------------------------------------------------------------------

    def exit_code(self) -> int | None:
        """None: the kernel's process is the job's, on another node."""
        return None

    def interrupt_by_signal(self) -> None:
        """SIGINT to the job's batch process, which passes it to the kernel's process group."""
        argv = [self.commands.scancel, "--signal=INT", "--batch", str(self.job.job_id)]
        done = run(Invocation(argv, self.commands.environment()), self.commands.timeout)
        if done.returncode != 0:
            raise SSDError(f"the kernel's job could not be signalled: {done.failure()}", code=ErrorCode.KERNEL_DEAD)

    async def restart(self) -> dict[str, float]:
        """A new kernel process inside the same allocation: same id, ports and key."""
        if self.state == "dead":
            reason = self.job_state.reason if self.job_state is not None else "it ended"
            raise SSDError(f"the kernel's job has ended ({reason}); start a new kernel", code=ErrorCode.KERNEL_DEAD)
        began = time.monotonic()
        self._cancel_linger()
        self.state = "restarting"
        (self.folder / RESTART_FILE).touch(mode=0o600)
        with contextlib.suppress(KernelSilent):
            await self.link.request("control", "shutdown_request", {"restart": True}, timeout=1.0)
        try:
            await self._wait_endpoint(self.generation + 1)
            await self._wait_ready()
        except SSDError as exc:
            self.state = "dead"
            self.hooks.on_state(self, "dead", {"exit_code": None, "reason": exc.message.partition(";")[0]})
            raise
        self.state = "ready"
        self.record = msgspec.structs.replace(self.record, restarts=self.record.restarts + 1)
        self.hooks.on_record(self.kernel_id, self.record)
        self.hooks.on_state(self, "restarted", {"automatic": False})
        return {"ready": time.monotonic() - began}

    async def shutdown(self, event: str = "shutdown", reason: str | None = None) -> None:
        """scancel (after a polite shutdown_request when the kernel runs); the job's folder removed."""
        if self.state in ("queued", "starting") and self.generation < 0:
            self.state = "stopping"  # a start still waiting for its job: it sees this and gives up
            await self._stop_process()
            self.hooks.on_state(self, event, {"exit_code": None, "reason": reason or "cancelled while queued"})
            self.forget()
            return
        await super().shutdown(event, reason)

    async def kill_keeping(self) -> None:
        """A job cannot be killed and kept: scancel, and the kernel is listed dead until it is shut down."""
        if self.state == "dead":
            return
        self.state = "stopping"
        await self._stop_process()
        self.hooks.on_state(self, "dead", {"exit_code": None, "reason": "killed by its client"})
        self._linger_dead()

    async def _stop_process(self) -> None:
        """scancel (a job that already ended is no error) and wait until Slurm says it ended."""
        if self._watcher is not None:
            self._watcher.cancel()
        if not self.job.job_id:
            return
        with contextlib.suppress(SSDError):
            await async_cancel(self.job.job_id, self.commands)
            state = await asyncio.wait_for(self._job_end(0.2), self.hooks.shutdown_grace + 10.0)
            self.job_state = state

    def abandon(self) -> None:
        """After a failed start: cancel the job, forget the kernel; after the worker's exit cut it short, keep
        the job, its folder and the broker's record, so that the next worker adopts it (still queued, maybe)."""
        if self._orphaned:
            self.link.close()
            return
        self.forget()

    def forget(self) -> None:
        """Cancel the job unless it is known to have ended, then forget the kernel as any other."""
        if self._forgotten:
            return
        self._forgotten = True
        for task in (self._watcher, self._resuming):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        if self.job.job_id and not (self.job_state is not None and self.job_state.final):
            try:
                cancel(self.job.job_id, self.commands)
            except SSDError as exc:
                log.warning("job %s of kernel %s not cancelled: %s", self.job.job_id, self.kernel_id, exc)
        super().forget()

    def _remove_files(self) -> None:
        super()._remove_files()
        shutil.rmtree(self.folder, ignore_errors=True)

    def event_fields(self) -> dict[str, Any]:
        """What kernel_state events say of the job (no secrets)."""
        fields: dict[str, Any] = {"job_id": self.job.job_id}
        state = self.job_state
        if state is not None:
            fields |= {"reason": state.reason, "slurm_state": state.slurm_state}
            fields |= {"node": state.node, "partition": state.partition}
        return fields

"""One squeue for all of a kernel worker's jobs: each SlurmKernel asks for its job's next status, and every
question due by the time squeue runs is answered by the same run.

A kernel asks ``status(job_id, within)``: Slurm's word on the job from an squeue started at most *within*
seconds from now. The poller sleeps until the earliest such deadline, then runs one squeue for every job
asked about (later deadlines included: an early answer is only fresher), and answers them all. A question
asked while squeue runs waits for the next run. A kernel that stops waiting (a cancelled task) is no
longer asked about.
"""

from __future__ import annotations

import asyncio
import contextlib

from ssd.kernels.slurm.commands import SlurmCommands
from ssd.kernels.slurm.query import JobStatus, async_jobs_status

__all__ = ["JobPoller"]


class JobPoller:
    """Batches the squeue of one worker's jobs; ``runs`` counts the squeue it ran."""

    def __init__(self, commands: SlurmCommands) -> None:
        self.commands = commands
        self.runs = 0
        self._asked: list[tuple[int, float, asyncio.Future[JobStatus]]] = []  # job id, deadline, answer
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def status(self, job_id: int, within: float = 0.0) -> JobStatus:
        """The job's status from an squeue run started no later than *within* seconds from now."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[JobStatus] = loop.create_future()
        self._asked.append((job_id, loop.time() + within, answer))
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        return await answer

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._asked = [entry for entry in self._asked if not entry[2].done()]
            if not self._asked:
                return
            self._wake.clear()
            due = min(deadline for _, deadline, _ in self._asked)
            if due > loop.time():
                with contextlib.suppress(TimeoutError):  # woken early by a new question: look again
                    await asyncio.wait_for(self._wake.wait(), due - loop.time())
                continue
            batch, self._asked = self._asked, []
            await self._answer(batch)

    async def _answer(self, batch: list[tuple[int, float, asyncio.Future[JobStatus]]]) -> None:
        """One squeue for every job in *batch*; each question gets its job's status or the run's error."""
        job_ids = sorted({job_id for job_id, _, answer in batch if not answer.done()})
        if not job_ids:
            return
        self.runs += 1
        try:
            found = await async_jobs_status(job_ids, self.commands)
        except Exception as exc:  # squeue failed or timed out: every question of this run hears why
            for _, _, answer in batch:
                if not answer.done():
                    answer.set_exception(exc)
            return
        for job_id, _, answer in batch:
            if not answer.done():
                answer.set_result(found[job_id])

"""How one kernel worker keeps its jobs, on the real one-node Slurm through the daemon: one squeue per poll
for all of its kernels in jobs (a logging wrapper around the real squeue counts them)."""

from __future__ import annotations

from pathlib import Path

from envfixtures import public_dir
from slurmcluster import SlurmCluster
from support.eventually import eventually

from slurm.daemonjobs import alice_on_slurm, jobs


def _logging_squeue(folder: Path) -> tuple[Path, Path]:
    """A squeue that appends its arguments to a log (any user may write it), then runs the real one."""
    log = folder / "squeue.log"
    log.touch()
    log.chmod(0o666)
    wrapper = folder / "squeue"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec /usr/bin/squeue "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, log


def test_one_squeue_per_poll_for_all_the_workers_jobs(tmp_path: Path, cluster: SlurmCluster) -> None:
    """Two kernels ready in two jobs: every squeue the worker runs from then on asks for both jobs at once."""
    with public_dir() as where:
        wrapper, log = _logging_squeue(where)
        with alice_on_slurm(tmp_path, cluster, {"SSD_SLURM_SQUEUE": str(wrapper)}) as (_, _daemon, client):
            first = client.kernel_start("sci", "ipykernel", placement="slurm", slurm={"time": "5"}).kernel
            second = client.kernel_start("sci", "ipykernel", placement="slurm", slurm={"time": "5"}).kernel
            assert first.job_id is not None
            assert second.job_id is not None
            both = f"--jobs={min(first.job_id, second.job_id)},{max(first.job_id, second.job_id)} "
            before = len(log.read_text().splitlines())

            def two_more() -> list[str] | None:
                lines = log.read_text().splitlines()[before:]
                return lines if len(lines) >= 2 else None

            polls = eventually(two_more, what="two more squeue of the worker", timeout=30)
            assert all(both in line for line in polls), polls
            for kernel in (first, second):
                client.kernel_shutdown(kernel.kernel_id)
            eventually(lambda: jobs(cluster) == [], what="squeue empty after the shutdowns")

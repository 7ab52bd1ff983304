"""A daemon killed while sbatch runs leaves no job unwatched: the kernel's record is stored before sbatch (job id
0: submitting) and the job's name carries the kernel id, so the next daemon finds the job by its name and adopts
it. Deterministic: a wrapper runs the real sbatch, prints its output, then blocks until the test lets it go."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from envfixtures import public_dir
from kerneltools import evaluate, give_env
from slurmcluster import SlurmCluster
from support.daemon import Daemon
from support.eventually import eventually
from users import User, stop_and_audit, users

from slurm.daemonjobs import jobs, slurm_client, slurm_daemon
from ssd.client import Client
from ssd.kernels.slurm.jobhost import ENDPOINT_FILE


def _blocking_sbatch(folder: Path) -> tuple[Path, Path]:
    """An sbatch that runs the real one and prints its output, then blocks until a line comes on its FIFO."""
    fifo = folder / "go"
    os.mkfifo(fifo)
    fifo.chmod(0o666)
    wrapper = folder / "sbatch"
    wrapper.write_text(f'#!/bin/sh\n/usr/bin/sbatch "$@"\nstatus=$?\nread go < {fifo}\nexit $status\n')
    wrapper.chmod(0o755)
    return wrapper, fifo


def _let_go(fifo: Path) -> None:
    """Release a wrapper blocked on *fifo* (none may be left: the old worker's exit killed it)."""
    try:
        descriptor = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: no reader
        return
    with contextlib.suppress(OSError):
        os.write(descriptor, b"go\n")
    os.close(descriptor)


def _kernel_jobs(cluster: SlurmCluster) -> list[tuple[str, str]]:
    """(job id, name) of every job whose name marks it as an ssd kernel's."""
    lines = cluster.run("squeue", "--noheader", "--format=%i %j").split("\n")
    return [(job, name) for job, _, name in (line.partition(" ") for line in lines if line) if "ssd-kernel" in name]


def test_a_job_submitted_as_the_daemon_dies_is_adopted_by_its_name(tmp_path: Path, cluster: SlurmCluster) -> None:
    """sbatch returned (the job is in squeue) but its id never reached the record: kill -9 of the daemon, a new
    one adopts the job by its name (said in its log), the kernel runs in it, and no job is left unwatched."""
    with users(1) as (alice,), public_dir() as where:
        give_env(alice, where)
        wrapper, fifo = _blocking_sbatch(where)
        env = {"SSD_SLURM_SBATCH": str(wrapper)}
        daemons = [slurm_daemon(tmp_path, cluster, env=env)]
        try:
            _killed_during_sbatch(tmp_path, cluster, alice, daemons, env)
        finally:
            _let_go(fifo)
            stop_and_audit(daemons[-1])


def _killed_during_sbatch(
    tmp_path: Path, cluster: SlurmCluster, alice: User, daemons: list[Daemon], env: dict[str, str]
) -> None:
    """The scenario above; *daemons* gets the second daemon (the caller stops the last one)."""
    client = slurm_client(daemons[0], tmp_path, alice)
    starter = threading.Thread(target=_start_ignoring_the_end, args=(client,), daemon=True)
    starter.start()
    ((job_id, name),) = eventually(lambda: _kernel_jobs(cluster) or None, what="the job submitted", timeout=30)
    kernel_id = name.removeprefix("ssd-kernel-")
    # The job runs and its relay announces itself while sbatch still blocks: the next worker finds it running
    # (its record never learned the job's endpoint; a job still queued is the other test's path).
    eventually(lambda: next(alice.home.rglob(f"{kernel_id}/{ENDPOINT_FILE}"), None), what="the job's relay up")
    daemons[0].process.kill()  # the wrapper still blocks: the worker never saw the job id
    daemons[0].process.wait()
    (daemons[0].state_dir / "daemon.json").unlink()
    daemons.append(slurm_daemon(tmp_path, cluster, init=False, env=env))
    starter.join(30)
    client.close()
    client = slurm_client(daemons[-1], tmp_path, alice)
    try:
        ready = [(kernel_id, "ready", int(job_id))]

        def adopted() -> bool:
            return [(k.kernel_id, k.state, k.job_id) for k in client.kernel_list()] == ready

        eventually(adopted, what="the job adopted by its name and the kernel ready", timeout=60)
        connection = client.connection_info(client.kernel_info(kernel_id).connection)
        assert evaluate(connection, "os.environ['SLURM_JOB_ID']") == job_id
        assert f"job {job_id} ({name}) was submitted but its id never reached the record" in daemons[-1].log()
        assert _kernel_jobs(cluster) == [(job_id, name)]  # the one job Slurm holds is the adopted kernel's
        client.kernel_shutdown(kernel_id)
        eventually(lambda: jobs(cluster) == [], what="squeue empty after the shutdown")
    finally:
        client.close()


def _start_ignoring_the_end(client: Client) -> None:
    """A Slurm start whose daemon is killed while sbatch runs: its failure is expected and of no interest."""
    with contextlib.suppress(Exception):
        client.kernel_start("sci", "ipykernel", placement="slurm", timeout=10)

"""How one kernel worker keeps its jobs, on the real one-node Slurm through the daemon: one squeue per poll
for all of its kernels in jobs (a logging wrapper around the real squeue counts them); a kernel still queued
when the daemon is killed is waited for again by the next one."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

from envfixtures import public_dir
from kerneltools import EventTap, evaluate, give_env
from slurmcluster import SlurmCluster
from support.daemon import Daemon
from support.eventually import eventually
from users import User, stop_and_audit, users

from slurm.daemonjobs import alice_on_slurm, hold_node, jobs, release, slurm_client, slurm_daemon
from ssd.client import Client
from ssd.topics import KERNEL, user_topic


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


def test_a_queued_kernel_is_waited_for_again_after_the_daemon_is_killed(tmp_path: Path, cluster: SlurmCluster) -> None:
    """Started while another job holds the node, kill -9 of the daemon: the next daemon's worker re-adopts the
    kernel as queued (its job not cancelled); once the node is released it becomes ready and runs code."""
    with users(1) as (alice,), public_dir() as where:
        give_env(alice, where)
        daemons = [slurm_daemon(tmp_path, cluster)]
        try:
            _queued_across_a_restart(tmp_path, cluster, alice, daemons)
        finally:
            stop_and_audit(daemons[-1])


def _queued_across_a_restart(tmp_path: Path, cluster: SlurmCluster, alice: User, daemons: list[Daemon]) -> None:
    """The scenario above; *daemons* gets the second daemon (the caller stops the last one)."""
    client = slurm_client(daemons[0], tmp_path, alice)
    holder = hold_node(cluster)
    try:
        tap = EventTap(client, user_topic(KERNEL, alice.name))
        starter = threading.Thread(target=_start_ignoring_the_end, args=(client,), daemon=True)
        starter.start()
        queued = tap.wait_for(lambda t, k, c: k == "kernel_state" and c.get("state") == "queued", 30)
        tap.close()
        daemons[0].process.kill()
        daemons[0].process.wait()
        (daemons[0].state_dir / "daemon.json").unlink()
        daemons.append(slurm_daemon(tmp_path, cluster, init=False))
        starter.join(30)  # the first start's wait ends on its client's timeout
        client.close()
        client = slurm_client(daemons[-1], tmp_path, alice)
        listed = eventually(lambda: client.kernel_list() or None, what="the kernel re-adopted", timeout=30)
        assert [(k.kernel_id, k.state, k.job_id) for k in listed] == [(queued["kernel_id"], "queued", queued["job_id"])]
        assert f"{queued['job_id']} PENDING" in jobs(cluster)
    finally:
        release(cluster, holder)
    ready = [(queued["kernel_id"], "ready")]
    eventually(lambda: [(k.kernel_id, k.state) for k in client.kernel_list()] == ready, "ready", timeout=60)
    connection = client.connection_info(client.kernel_info(queued["kernel_id"]).connection)
    assert evaluate(connection, "os.environ['SLURM_JOB_ID']") == str(queued["job_id"])
    client.kernel_shutdown(queued["kernel_id"])
    eventually(lambda: jobs(cluster) == [], what="squeue empty")
    client.close()


def _start_ignoring_the_end(client: Client) -> None:
    """A Slurm start whose daemon is killed while it waits: its timeout is expected and of no interest."""
    with contextlib.suppress(Exception):
        client.kernel_start("sci", "ipykernel", placement="slurm", timeout=10)

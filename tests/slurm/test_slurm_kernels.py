"""Kernels in Slurm jobs through the daemon, on the real one-node Slurm, as real users: the kernel runs in a
job as the user and executes through the relays; queued while the node is held, cancelled while queued;
shut down with squeue empty after; re-adopted by job id after the daemon is killed.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

from envfixtures import public_dir
from kerneltools import EventTap, evaluate, give_env
from slurmcluster import SlurmCluster
from support.daemon import new_client
from support.eventually import eventually
from users import login, stop_and_audit, users

from slurm.daemonjobs import alice_on_slurm, hold_node, jobs, release, slurm_client, slurm_daemon
from ssd.errors import ErrorCode, RemoteError
from ssd.topics import KERNEL, user_topic


def test_kernel_in_a_job_runs_as_the_user_and_shuts_down(tmp_path: Path, cluster: SlurmCluster) -> None:
    """server_info names the placement; the kernel runs in a job as the user (uid, SLURM_JOB_ID), executes
    through the relays, is listed with its job, node and partition; shutdown leaves squeue empty."""
    with alice_on_slurm(tmp_path, cluster) as (alice, _, client):
        info = client.server_info()
        assert info.placements == ["local", "slurm"]
        assert info.slurm is not None
        assert (info.slurm.default_time, info.slurm.max_gpus) == ("1:00:00", 0)
        started = client.kernel_start("sci", "ipykernel", placement="slurm", slurm={"time": "5"})
        kernel = started.kernel
        assert kernel.placement == "slurm"
        assert kernel.job_id
        assert "curve_publickey" in started.connection
        connection = client.connection_info(started.connection)
        uid, job = evaluate(connection, "(os.getuid(), os.environ.get('SLURM_JOB_ID'))")
        assert (uid, job) == (alice.uid, str(kernel.job_id))
        listed = {k.kernel_id: k for k in client.kernel_list()}[kernel.kernel_id]
        assert (listed.job_id, listed.node, listed.partition) == (kernel.job_id, cluster.node, cluster.partition)
        assert listed.time_left is not None
        assert 0 < listed.time_left <= 300
        client.kernel_shutdown(kernel.kernel_id)
        eventually(lambda: jobs(cluster) == [], what="squeue empty after shutdown")
        assert client.kernel_list() == []


def test_queued_while_the_node_is_held_then_cancelled(tmp_path: Path, cluster: SlurmCluster) -> None:
    """With the only node held by another job the kernel is queued (an event with Slurm's reason and the job
    id); shutting it down then cancels the job, and the start is answered with the cancellation."""
    with alice_on_slurm(tmp_path, cluster) as (alice, _daemon_, client):
        holder = hold_node(cluster)
        tap = EventTap(client, user_topic(KERNEL, alice.name))
        outcome: dict[str, object] = {}

        def start() -> None:
            try:
                outcome["reply"] = client.kernel_start("sci", "ipykernel", placement="slurm")
            except Exception as exc:  # the start is cancelled: its error is the outcome
                outcome["error"] = exc

        starter = threading.Thread(target=start)
        try:
            starter.start()
            queued = tap.wait_for(lambda t, k, c: k == "kernel_state" and c.get("state") == "queued", 30)
            assert queued["job_id"] > 0
            assert queued["slurm_state"] == "PENDING"
            assert queued["reason"]
            other = new_client(_daemon_, tmp_path / "second", timeout=60)
            other.connect()
            login(other, alice.name, alice.password)
            other.kernel_shutdown(queued["kernel_id"])
            other.close()
            starter.join(30)
            assert "cancelled" in str(outcome.get("error"))
            eventually(lambda: str(queued["job_id"]) not in " ".join(jobs(cluster)), what="queued job cancelled")
        finally:
            tap.close()
            release(cluster, holder)


def test_a_python_missing_on_the_node_is_named(tmp_path: Path, cluster: SlurmCluster) -> None:
    """The environment gone when the job starts (as on a node without the shared filesystem): the start fails
    naming the environment's Python and the node, and the user has no kernel left."""
    with alice_on_slurm(tmp_path, cluster) as (alice, _, client):
        prefix = Path(next(env.prefix for env in client.env_list().envs if env.name == "sci"))
        holder = hold_node(cluster)
        tap = EventTap(client, user_topic(KERNEL, alice.name))
        outcome: dict[str, Exception] = {}

        def start() -> None:
            try:
                client.kernel_start("sci", "ipykernel", placement="slurm")
            except Exception as exc:  # the expected failure
                outcome["error"] = exc

        starter = threading.Thread(target=start)
        away = prefix.with_name("sci-away")
        try:
            starter.start()
            tap.wait_for(lambda t, k, c: k == "kernel_state" and c.get("state") == "queued", 30)
            prefix.rename(away)
            release(cluster, holder)
            starter.join(60)
        finally:
            tap.close()
            if away.exists():
                away.rename(prefix)
        error = outcome["error"]
        assert isinstance(error, RemoteError)
        assert error.code == ErrorCode.KERNEL_START_FAILED
        assert f"the environment's Python {prefix}/bin/python is not on node {socket.gethostname()}" in str(error)
        assert "a filesystem the login node and the nodes share" in str(error)
        assert client.kernel_list() == []


def test_readopted_by_job_id_after_the_daemon_is_killed(tmp_path: Path, cluster: SlurmCluster) -> None:
    """kill -9 of the daemon: the next daemon's worker re-adopts the kernel by its job id and it executes."""
    with users(1) as (alice,), public_dir() as where:
        give_env(alice, where)
        daemon = slurm_daemon(tmp_path, cluster)
        client = slurm_client(daemon, tmp_path, alice)
        started = client.kernel_start("sci", "ipykernel", placement="slurm")
        connection = client.connection_info(started.connection)
        client.close()
        daemon.process.kill()
        daemon.process.wait()
        (daemon.state_dir / "daemon.json").unlink()
        daemon = slurm_daemon(tmp_path, cluster, init=False)
        try:
            client = slurm_client(daemon, tmp_path, alice)
            eventually(lambda: [k.state for k in client.kernel_list()] == ["ready"], what="re-adopted", timeout=30)
            assert evaluate(connection, "os.environ['SLURM_JOB_ID']") == str(started.kernel.job_id)
            client.kernel_shutdown(started.kernel.kernel_id)
            eventually(lambda: jobs(cluster) == [], what="squeue empty")
            client.close()
        finally:
            stop_and_audit(daemon)
    assert not os.path.exists(str(alice.home / ".local/state/ssd/jobs" / started.kernel.kernel_id))

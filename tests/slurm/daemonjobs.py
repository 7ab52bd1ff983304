"""A daemon offering Slurm placement on the test cluster, a real user logged in to it, and the node held."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from envfixtures import public_dir
from kerneltools import give_env
from slurmcluster import SlurmCluster
from support.daemon import Daemon, new_client
from support.eventually import eventually
from users import User, login, start_system_daemon, stop_and_audit, users

from ssd.client import Client

__all__ = ["alice_on_slurm", "hold_node", "jobs", "release", "slurm_client", "slurm_daemon"]


def slurm_daemon(tmp: Path, cluster: SlurmCluster, *, init: bool = True, env: dict[str, str] | None = None) -> Daemon:
    """A system daemon offering kernels in jobs of *cluster* (its relay reached on the loopback); *env* adds to
    its environment (``SSD_SLURM_SQUEUE``, ...)."""
    base = {"SSD_SLURM_ENABLED": "true", "SSD_SLURM_CONF": str(cluster.conf), "SSD_SLURM_LOGIN_ADDRESS": "127.0.0.1"}
    return start_system_daemon(tmp, extra_env=base | (env or {}), init=init)


def slurm_client(daemon: Daemon, tmp: Path, user: User) -> Client:
    """A client logged in as *user* by password (PAM)."""
    client = new_client(daemon, tmp / f"client-{user.name}", timeout=120)
    client.connect()
    login(client, user.name, user.password)
    return client


@contextmanager
def alice_on_slurm(
    tmp: Path, cluster: SlurmCluster, env: dict[str, str] | None = None
) -> Iterator[tuple[User, Daemon, Client]]:
    """A test user with the environment sci, a daemon (*env* added to its environment), and the user's client;
    the daemon audited at the end."""
    with users(1) as (alice,), public_dir() as where:
        give_env(alice, where)
        daemon = slurm_daemon(tmp, cluster, env=env)
        client = slurm_client(daemon, tmp, alice)
        try:
            yield alice, daemon, client
        finally:
            client.close()
            stop_and_audit(daemon)


def jobs(cluster: SlurmCluster) -> list[str]:
    """squeue's lines (job id and state) of every job."""
    return [line for line in cluster.queue() if line.strip()]


def hold_node(cluster: SlurmCluster) -> str:
    """A job (root's) that takes the whole node until cancelled."""
    holder = cluster.run("sbatch", "--parsable", "--exclusive", "--output=/dev/null", "--wrap=sleep 300").strip()
    # squeue ignores --states when given --jobs: the job's own state is checked.
    eventually(lambda: cluster.queue(f"--jobs={holder}") == [f"{holder} RUNNING"], "the holding job to run")
    return holder


def release(cluster: SlurmCluster, job_id: str) -> None:
    """Cancel the holding job and wait until it is gone."""
    cluster.run("scancel", job_id)
    eventually(lambda: job_id not in " ".join(jobs(cluster)), what="holder gone")

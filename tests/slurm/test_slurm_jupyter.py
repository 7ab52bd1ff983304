"""The Jupyter provisioner on kernels in Slurm jobs, through jupyter_client's AsyncKernelManager, a kernelspec
written by ``ssd-ctl kernelspec install --slurm``, a real user and the real one-node Slurm: a spec asking for
a partition the host does not offer is refused; while the node is held the start logs Slurm's reason once,
a shutdown while queued cancels the job, and the queue timeout cancels it with the reason; on a free node
the kernel runs in a job and executes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from jupyter_client.manager import AsyncKernelManager
from slurmcluster import SlurmCluster
from support.eventually import eventually
from support.jupyterside import CTL, TIMEOUT, Site, jupyter_env

from slurm.daemonjobs import alice_on_slurm, hold_node, jobs, release
from ssd.errors import SSDError


def _ctl(client_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SSD_CLIENT_DIR": str(client_dir)}
    return subprocess.run([*CTL, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


@dataclass(frozen=True)
class SlurmSpecs:
    """A daemon offering the cluster's one partition, alice's client folder and her two Slurm kernelspecs."""

    host: str
    client_dir: Path
    spec: str  # queue_timeout 600
    short: str  # queue_timeout 2


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory, cluster: SlurmCluster) -> Iterator[SlurmSpecs]:
    """The daemon, the Jupyter side (JUPYTER_PATH, client folder) and the kernelspecs, for this module."""
    tmp = tmp_path_factory.mktemp("slurm-jupyter")
    partitions = {"SSD_SLURM_PARTITIONS": cluster.partition}
    with alice_on_slurm(tmp, cluster, partitions) as (alice, daemon, _client), pytest.MonkeyPatch.context() as mp:
        client_dir = tmp / f"client-{alice.name}"  # slurm_client's: its key holds alice's session
        site = Site(daemon, client_dir, tmp / "jupyter", Path(), "")
        jupyter_env(mp, site, tmp)
        made = _ctl(client_dir, "kernelspec", "install", daemon.host, "sci", "--slurm", "--time=5", "--json",
                    "--queue-timeout=600", "--prefix", str(site.jupyter))  # fmt: skip
        assert made.returncode == 0, made.stderr
        spec = json.loads(made.stdout)
        assert spec["slurm"] == {"time": "5"}
        assert spec["name"].endswith("-slurm")
        short = _ctl(client_dir, "kernelspec", "install", daemon.host, "sci", "--slurm", "--queue-timeout=2",
                     "--name=ssd-short", "--prefix", str(site.jupyter))  # fmt: skip
        assert short.returncode == 0, short.stderr
        yield SlurmSpecs(daemon.host, client_dir, spec["name"], "ssd-short")


def test_a_partition_the_host_does_not_offer_is_refused(specs: SlurmSpecs, cluster: SlurmCluster) -> None:
    """ssd-ctl kernelspec install --slurm checks the partition against the host's server_info."""
    refused = _ctl(specs.client_dir, "kernelspec", "install", specs.host, "sci", "--slurm", "--partition=gpu")
    assert refused.returncode != 0
    assert f"does not offer the Slurm partition 'gpu' (it offers: {cluster.partition})" in refused.stderr


@pytest.mark.parametrize("now", [True, False], ids=["now", "polite"])
def test_a_queued_start_logs_the_reason_once_and_a_shutdown_cancels_its_job(
    specs: SlurmSpecs, cluster: SlurmCluster, caplog: pytest.LogCaptureFixture, now: bool
) -> None:
    """The node held: Slurm's reason logged once per change; shutdown_kernel cancels the start and its job."""
    caplog.set_level(logging.INFO)
    holder = hold_node(cluster)
    try:
        asyncio.run(_shut_down_while_queued(specs.spec, specs.host, cluster, caplog, now=now))
    finally:
        release(cluster, holder)


def test_the_queue_timeout_cancels_the_job_naming_the_reason(specs: SlurmSpecs, cluster: SlurmCluster) -> None:
    """The node held, a queue timeout of 2 s: the job is cancelled and the start fails naming Slurm's reason."""
    holder = hold_node(cluster)
    try:
        asyncio.run(_queue_timeout(specs.short, cluster))
    finally:
        release(cluster, holder)


def test_a_jupyter_kernel_runs_in_a_slurm_job(specs: SlurmSpecs, cluster: SlurmCluster) -> None:
    """On a free node the kernel runs in a job and executes; squeue is empty after its shutdown."""
    asyncio.run(_runs_in_a_job(specs.spec))
    eventually(lambda: jobs(cluster) == [], what="squeue empty after the kernel's shutdown")


async def _shut_down_while_queued(
    name: str, host: str, cluster: SlurmCluster, caplog: pytest.LogCaptureFixture, *, now: bool
) -> None:
    """Queued: Slurm's reason logged once; KernelManager.shutdown_kernel cancels the start and scancels the job.

    The start ends cancelled, not failed: jupyter_client's start and shutdown both settle the manager's
    ``ready`` future, and a failed start that ends while a shutdown runs makes one of them raise."""
    km = AsyncKernelManager(kernel_name=name)
    starting = asyncio.ensure_future(km.start_kernel())

    def queued_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if "queued in Slurm" in r.getMessage()]

    ours = await asyncio.to_thread(eventually, lambda: [j for j in jobs(cluster) if "PENDING" in j] or None, "queued")
    job_id = ours[0].split()[0]
    line = f"ssd-provisioner: kernel on {host} queued in Slurm: job {job_id}, waiting for resources (Slurm: PENDING)"
    await asyncio.to_thread(eventually, lambda: line in queued_lines(), what="Slurm's reason logged", timeout=30)
    assert len(ours) == 1, jobs(cluster)
    assert queued_lines().count(line) == 1, queued_lines()
    assert len(set(queued_lines())) == len(queued_lines()), queued_lines()
    await asyncio.wait_for(km.shutdown_kernel(now=now), 30)  # it hung (the shutdown never ended the start)
    assert starting.cancelled()
    cancelled = f"ssd-provisioner: cancelled the kernel's start on {host}: job {job_id} removed from Slurm's queue"
    assert cancelled in [r.getMessage() for r in caplog.records]
    await asyncio.to_thread(eventually, lambda: job_id not in " ".join(jobs(cluster)), what="the job cancelled")


async def _queue_timeout(name: str, cluster: SlurmCluster) -> None:
    """A queue timeout of 2 s: the job is cancelled and the start fails naming Slurm's reason."""
    km = AsyncKernelManager(kernel_name=name)
    before = jobs(cluster)
    with pytest.raises(SSDError) as failed:
        await km.start_kernel()
    assert "was still queued after 2 s (waiting for resources); it was cancelled" in str(failed.value)
    await asyncio.to_thread(eventually, lambda: jobs(cluster) == before, what="no job left but the holder")


async def _runs_in_a_job(name: str) -> None:
    """On a free node: the kernel runs in a job (SLURM_JOB_ID set) and answers through the relays."""
    km = AsyncKernelManager(kernel_name=name)
    await km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=TIMEOUT)
        reply = await kc.execute_interactive("import os; print(os.environ['SLURM_JOB_ID'])", timeout=TIMEOUT)
        assert reply["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
        await km.shutdown_kernel()

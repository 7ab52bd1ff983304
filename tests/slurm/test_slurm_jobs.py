"""ssd's Slurm library as a real user against a real Slurm: submit, queued with a reason, cancel, and resource
options refused before any submission (the time limit is tested through the daemon: test_slurm_kernel_ops.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from slurmcluster import SlurmCluster
from support.eventually import eventually
from users import User, users

from slurm.slurmtools import AsUser

pytestmark = pytest.mark.root

# Written by the job: who it runs as and which job it is, from the job's own environment.
REPORT = "import os; print(os.getuid(), os.environ['SLURM_JOB_ID'], os.environ.get('SSD_MARK'), os.environ.get('LEAK'))"


@pytest.fixture
def user() -> Iterator[User]:
    """A fresh real user, removed afterwards."""
    with users(1) as made:
        yield made[0]


def test_a_job_runs_the_command_as_the_user(cluster: SlurmCluster, user: User) -> None:
    """The job runs the Python command as the user, with its job id and exactly the environment given."""
    slurm = AsUser(user, cluster, cluster.config(), mode="sync", extra_env={"LEAK": "from-the-worker"})
    output = user.home / "report.out"
    job_id = slurm.start([sys.executable, "-c", REPORT], environment={"SSD_MARK": "given"}, output=str(output))
    # Slurm creates the file when the job starts: wait for the line, not only the file.
    text = eventually(lambda: (output.exists() and output.read_text().strip()) or None, "the job's output")
    assert text.split() == [str(user.uid), str(job_id), "given", "None"]
    assert output.stat().st_uid == user.uid
    ended = eventually(lambda: (s := slurm.status(job_id))["final"] and s, "the job to end")
    assert (ended["phase"], ended["slurm_state"]) == ("dead", "COMPLETED")


def test_a_job_waits_queued_while_the_node_is_busy_and_is_cancelled(cluster: SlurmCluster, user: User) -> None:
    """With the only node held by another job, the user's job is queued with Slurm's reason and its job id;
    cancelled while queued, it leaves squeue and is reported dead, CANCELLED."""
    holder = cluster.run("sbatch", "--parsable", "--exclusive", "--output=/dev/null", "--wrap=sleep 300").strip()
    try:
        eventually(lambda: cluster.queue(f"--jobs={holder}") == [f"{holder} RUNNING"], "the holding job to run")
        slurm = AsUser(user, cluster, cluster.config())
        job_id = slurm.start(["/bin/sleep", "300"])
        queued = eventually(lambda: (s := slurm.status(job_id))["slurm_reason"] != "None" and s, "Slurm's reason")
        assert queued["phase"] == "queued"
        assert queued["job_id"] == job_id
        assert queued["slurm_reason"] in ("Resources", "Priority"), queued
        assert "waiting" in queued["reason"]
        slurm.cancel(job_id)
        eventually(lambda: not cluster.queue(f"--jobs={job_id}"), "squeue to forget the cancelled job")
        ended = slurm.status(job_id)
        assert (ended["phase"], ended["slurm_state"]) == ("dead", "CANCELLED"), ended
        assert "cancelled" in ended["reason"]
        slurm.cancel(job_id)  # again: a job that ended already is not an error
    finally:
        cluster.run("scancel", holder)


@pytest.mark.parametrize(
    ("request_", "named"),
    [
        ({"cpus": 3}, "slurm.max_cpus = 2"),
        ({"time": "2:00:00"}, "slurm.max_time = 1:00:00"),
        ({"mem": "2G"}, "slurm.max_mem = 1G"),
        ({"gpus": 1}, "slurm.max_gpus = 0"),
        ({"partition": "gpu"}, "slurm.partitions = debug"),
        ({"time": "soon"}, "not a Slurm time"),
    ],
)
def test_resource_options_outside_the_limits_are_refused_before_submission(
    cluster: SlurmCluster, user: User, request_: dict[str, object], named: str
) -> None:
    """An option over a limit of [slurm] is refused slurm_limit, naming the limit, and no job exists."""
    config = cluster.config(max_cpus=2, max_time="1:00:00", max_mem="1G", partitions=["debug"])
    before = cluster.queue("--states=all")
    refused = AsUser(user, cluster, config).refusal(request_)
    assert refused["error"] == "slurm_limit"
    assert named in refused["message"]
    assert cluster.queue("--states=all") == before  # no job was submitted


def test_slurms_own_refusal_reaches_the_user_in_its_words(cluster: SlurmCluster, user: User) -> None:
    """A partition ssd's limits allow but the cluster lacks: sbatch refuses, and its reason is in the error."""
    refused = AsUser(user, cluster, cluster.config()).refusal({"partition": "nosuch"})
    assert refused["error"] == "slurm_error"
    assert "Invalid partition name" in refused["message"]


def test_a_user_cannot_cancel_another_users_job(cluster: SlurmCluster) -> None:
    """scancel of someone else's job is an error with Slurm's words, and the job keeps running."""
    with users(2) as (owner, other):
        job_id = AsUser(owner, cluster, cluster.config()).start(["/bin/sleep", "300"])
        try:
            answer = AsUser(other, cluster, cluster.config()).call("cancel", job_id=job_id)
            assert answer.get("error") == "slurm_error", answer
            assert "denied" in answer["message"].lower(), answer
            assert cluster.queue(f"--jobs={job_id}")
        finally:
            cluster.run("scancel", str(job_id))

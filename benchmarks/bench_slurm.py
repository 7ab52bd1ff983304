"""Kernels in Slurm jobs (issue 18): ssd's kernel start through Slurm against a local start through ssd, and
Slurm's own latency from ``sbatch`` to the job's first line of output against a direct start of the same
command, all in one run, as the same real user.

Run as root with the project's environment: ``/opt/ssd-dev/venv/bin/python benchmarks/bench_slurm.py
[--rounds 10] [--json]``. It starts the tests' one-node Slurm (tests/slurmcluster.py), makes a user, and
alternates: the command started directly (``Popen`` as the user, until its first line on the pipe), and the
same command submitted with ``sbatch`` as the user (until its first line in the job's output file), each
sbatch at a random phase of slurmctld's one-second scheduling pass (see PHASES). Then, through a system
daemon with ``[slurm] enabled``, it alternates ``kernel_start`` of the same ipykernel on this host and in a
Slurm job (start to ready, as the client sees it; each Slurm start at a random phase too), shutting each down.
Prints the medians; the target is: the Slurm start costs at most Slurm's own latency (sbatch to first output
minus the direct start) plus 0.5 s over the local one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "envs"), str(ROOT / "tests" / "kernels")]

from envfixtures import public_dir  # noqa: E402
from kerneltools import give_env  # noqa: E402
from slurm.daemonjobs import jobs, slurm_client, slurm_daemon  # noqa: E402
from slurmcluster import SlurmCluster, slurm_cluster  # noqa: E402 (the tests' folder is put on sys.path above)
from support.eventually import eventually  # noqa: E402
from users import User, stop_and_audit, users  # noqa: E402

from ssd.client import Client  # noqa: E402
from ssd.kernels.slurm import batch_script  # noqa: E402

COMMAND = ["/usr/bin/python3", "-c", "print('first line', flush=True)"]
POLL = 0.002  # seconds between looks at the job's output file
# slurmctld starts newly submitted batch jobs on its once-a-second background pass. Rounds run back to back
# would submit just after one pass and always wait ~1 s for the next; a user submits at any moment, so each
# sbatch is preceded by an uncounted pause, uniform over one second (seeded: the same pauses every run).
PHASES = random.Random(18)


def as_user(user: User) -> dict[str, Any]:
    """Popen arguments that run a command as *user* in their home."""
    return {"user": user.uid, "group": user.gid, "extra_groups": [], "cwd": user.home}


def direct_start(user: User) -> float:
    """Seconds from Popen to the command's first line on its stdout."""
    started = time.perf_counter()
    process = subprocess.Popen(COMMAND, stdout=subprocess.PIPE, env={"PATH": "/usr/bin:/bin"}, **as_user(user))
    assert process.stdout is not None
    line = process.stdout.readline()
    elapsed = time.perf_counter() - started
    process.stdout.close()
    process.wait()
    assert line.strip() == b"first line", line
    return elapsed


def sbatch_start(cluster: SlurmCluster, user: User, round_: int) -> float:
    """Seconds from running sbatch to the job's first line in its output file."""
    output = user.home / f"bench-{round_}.out"
    argv = ["sbatch", "--parsable", f"--output={output}", "--time=1", f"--chdir={user.home}"]
    time.sleep(PHASES.uniform(0, 1))
    started = time.perf_counter()
    done = subprocess.run(
        argv, input=batch_script(COMMAND), text=True, capture_output=True, env=cluster.env(), **as_user(user)
    )
    assert done.returncode == 0, done.stderr
    while not (output.exists() and output.read_text()):
        time.sleep(POLL)
        assert time.perf_counter() - started < 60, f"job {done.stdout.strip()} wrote nothing in 60 s"
    elapsed = time.perf_counter() - started
    text = output.read_text()
    assert text.startswith("first line"), f"job {done.stdout.strip()} wrote {text!r}"
    return elapsed


def kernel_start(client: Client, cluster: SlurmCluster, placement: str) -> float:
    """Seconds from kernel_start to its reply (the kernel answered kernel_info); the kernel shut down after."""
    if placement == "slurm":
        time.sleep(PHASES.uniform(0, 1))
    started = time.perf_counter()
    reply = client.kernel_start("sci", "ipykernel", placement=placement)
    elapsed = time.perf_counter() - started
    client.kernel_shutdown(reply.kernel.kernel_id)
    eventually(lambda: jobs(cluster) == [], what="squeue empty after the shutdown")
    return elapsed


def measure_kernels(cluster: SlurmCluster, user: User, rounds: int) -> dict[str, list[float]]:
    """A daemon offering Slurm; alternate local and Slurm kernel starts *rounds* times each."""
    with public_dir() as where, tempfile.TemporaryDirectory(prefix="bench-slurm-") as tmp:
        give_env(user, where)
        # No spares: the local baseline is a cold start, as a job's kernel is (a spare answers in milliseconds).
        daemon = slurm_daemon(Path(tmp), cluster, env={"SSD_KERNELS_SPARES": "0"})
        client = slurm_client(daemon, Path(tmp), user)
        try:
            kernel_start(client, cluster, "local")  # the first start warms the caches: not counted
            kernel_start(client, cluster, "slurm")
            local, slurm = [], []
            for round_ in range(rounds):
                local.append(kernel_start(client, cluster, "local"))
                slurm.append(kernel_start(client, cluster, "slurm"))
                print(
                    f"round {round_ + 1}/{rounds}: ssd local {local[-1]:.3f} s, ssd slurm {slurm[-1]:.3f} s",
                    file=sys.stderr,
                )
        finally:
            client.close()
            stop_and_audit(daemon)
    return {"local": local, "slurm": slurm}


def measure(rounds: int) -> dict[str, Any]:
    """Start the cluster and a user; alternate direct and sbatch starts, then local and Slurm kernel starts."""
    with slurm_cluster() as cluster, users(1) as (user,):
        sbatch_start(cluster, user, -1)  # the first job after start-up waits for the first pass: not counted
        direct, slurm = [], []
        for round_ in range(rounds):
            direct.append(direct_start(user))
            slurm.append(sbatch_start(cluster, user, round_))
            print(f"round {round_ + 1}/{rounds}: direct {direct[-1]:.3f} s, sbatch {slurm[-1]:.3f} s", file=sys.stderr)
        kernels = measure_kernels(cluster, user, rounds)
        started_in = cluster.started_in
    scheduler = statistics.median(slurm) - statistics.median(direct)
    local, in_job = statistics.median(kernels["local"]), statistics.median(kernels["slurm"])
    return {
        "rounds": rounds,
        "cluster_start_s": started_in,
        "direct_median_s": statistics.median(direct),
        "sbatch_median_s": statistics.median(slurm),
        "ratio": statistics.median(slurm) / statistics.median(direct),
        "sbatch_overhead_s": scheduler,
        "kernel_local_median_s": local,
        "kernel_slurm_median_s": in_job,
        "kernel_slurm_overhead_s": in_job - local,
        "target_met": in_job - local <= scheduler + 0.5,
    }


def main() -> int:
    """Measure and print a table (or JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON document")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_slurm.py runs a Slurm and makes a user: run it as root", file=sys.stderr)
        return 1
    result = measure(args.rounds)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"test Slurm up in {result['cluster_start_s']:.2f} s; median of {args.rounds} starts each:")
    print(f"  direct start to first output   {result['direct_median_s'] * 1000:8.1f} ms")
    print(f"  sbatch to first output         {result['sbatch_median_s'] * 1000:8.1f} ms")
    print(f"  ratio {result['ratio']:.1f}x, Slurm adds {result['sbatch_overhead_s'] * 1000:.0f} ms")
    print(f"  ssd kernel start, local        {result['kernel_local_median_s'] * 1000:8.1f} ms")
    print(f"  ssd kernel start, Slurm job    {result['kernel_slurm_median_s'] * 1000:8.1f} ms")
    verdict = "met" if result["target_met"] else "NOT met"
    print(
        f"  the Slurm start adds {result['kernel_slurm_overhead_s'] * 1000:.0f} ms; target (Slurm's "
        f"{result['sbatch_overhead_s'] * 1000:.0f} ms + 500 ms) {verdict}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

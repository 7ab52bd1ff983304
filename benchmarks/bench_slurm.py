"""Kernels in Slurm jobs (issue 18), first part: Slurm's own latency from ``sbatch`` to the job's first line
of output, against a direct local start of the same command, in the same run, as the same real user.

Run as root with the project's environment: ``/opt/ssd-dev/venv/bin/python benchmarks/bench_slurm.py
[--rounds 10] [--json]``. It starts the tests' one-node Slurm (tests/slurmcluster.py), makes a user, and
alternates: the command started directly (``Popen`` as the user, until its first line on the pipe), and the
same command submitted with ``sbatch`` as the user (until its first line in the job's output file), each
sbatch at a random phase of slurmctld's one-second scheduling pass (see PHASES). Prints
the medians and their ratio. Later sessions add ssd's kernel start through Slurm (start to ready) beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

from slurmcluster import SlurmCluster, slurm_cluster  # noqa: E402 (the tests' folder is put on sys.path above)
from users import User, users  # noqa: E402

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


def measure(rounds: int) -> dict[str, Any]:
    """Start the cluster and a user; alternate direct and sbatch starts *rounds* times each."""
    with slurm_cluster() as cluster, users(1) as (user,):
        sbatch_start(cluster, user, -1)  # the first job after start-up waits for the first pass: not counted
        direct, slurm = [], []
        for round_ in range(rounds):
            direct.append(direct_start(user))
            slurm.append(sbatch_start(cluster, user, round_))
            print(f"round {round_ + 1}/{rounds}: direct {direct[-1]:.3f} s, sbatch {slurm[-1]:.3f} s", file=sys.stderr)
        started_in = cluster.started_in
    return {
        "rounds": rounds,
        "cluster_start_s": started_in,
        "direct_median_s": statistics.median(direct),
        "sbatch_median_s": statistics.median(slurm),
        "ratio": statistics.median(slurm) / statistics.median(direct),
        "sbatch_overhead_s": statistics.median(slurm) - statistics.median(direct),
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
    return 0


if __name__ == "__main__":
    sys.exit(main())

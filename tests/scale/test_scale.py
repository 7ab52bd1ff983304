"""The host under a CI-sized load (issue 17, Scale): real users, Spyder and Jupyter kernels mixed, every one
executing through its relay, the daemon answering, and a churn of kernels that leaves no descriptor, thread
or memory behind in the kernel workers, the broker or the edge. The full figures come from
benchmarks/bench_scale.py; docs/scale.md has both.

The churn measures cold starts on purpose (scale_host's default: spares off): it counts what one kernel's
start and stop leave behind in its worker, and with spares each start would set off a spare's start in the
background, still running when the sizes are sampled. Spares under load: tests/scale/test_burst.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.ci import require_root

from scale.scalehost import ScaleHost, Usage, scale_host, settled

pytestmark = pytest.mark.root

USERS, KERNELS = 4, 12
MIB = 1024 * 1024
# What a kernel worker may hold after the churn beyond what it held before, and why (bench_scale measured
# one kernel at 5 threads, 37 descriptors and about 0.5 MiB of the worker's memory):
# - threads: asyncio's default executor (kernel starts use it) grows lazily to min(32, CPUs + 4) threads;
# - descriptors: none stay open; 2 for a socket libzmq's reaper has not closed when the wait gives up;
# - memory: allocator and executor-stack noise; 4 MiB is what leaking half of each kernel's share would add.
SLACK = Usage(threads=min(32, (os.cpu_count() or 1) + 4), fds=2, rss=4 * MIB, fd_kinds={})
# Churn starts per user: more than any slack above, so a leak of one descriptor or one thread per start fails.
ROUNDS = 2 * SLACK.threads + 1


def check_answers(host: ScaleHost) -> None:
    """Every kernel runs 1+1 through its relay; ping answers; each user's kernel_list is exactly their kernels."""
    assert host.execute_all() == KERNELS
    for member in host.members:
        assert member.client.ping("scale").data == "scale"
        listed = {entry.kernel_id for entry in member.client.kernel_list()}
        assert listed == {kernel.kernel_id for kernel in member.kernels}


@pytest.mark.timeout(600)  # 12 kernels and 4 x 13 churn starts on a loaded two-core machine
def test_users_and_kernels_answer_and_a_churn_leaks_nothing(tmp_path: Path) -> None:
    """4 users, 12 kernels (ipykernel and Spyder alternating), all reachable; then 13 kernels per user started,
    run and stopped: every process is back within SLACK of its size before, no worker was lost."""
    require_root()
    with scale_host(tmp_path, USERS, per_user=KERNELS // USERS + 1, per_host=KERNELS + USERS) as host:
        for n in range(KERNELS):
            host.start(host.members[n % USERS])
        check_answers(host)
        host.churn_round()  # what a first start allocates for good (imports, pools) is not a leak
        before = host.sample()
        for _ in range(ROUNDS):
            host.churn_round()
        for name, pid in host.pids().items():
            settled(pid, before[name], SLACK, name)
        assert host.lost_workers() == []
        check_answers(host)

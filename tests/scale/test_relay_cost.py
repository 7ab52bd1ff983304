"""What a kernel costs its user's kernel worker (issue 17, Scale): the relays of all of a worker's kernels share
one forwarding thread (ssd.kernels.relayloop), so the worker's thread count does not grow with its kernels,
and each kernel's descriptors are its relay's sockets and the worker's own link, with no steering sockets.
Every kernel still executes through its relay.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.ci import require_root
from support.eventually import eventually

from scale.procusage import usage
from scale.scalehost import scale_host

pytestmark = pytest.mark.root

KERNELS = 10
# asyncio's default executor (kernel starts use it) grows lazily to min(32, CPUs + 4) threads, whatever the
# number of kernels; with a proxy thread per channel the 9 kernels added below brought 45.
EXECUTOR_THREADS = min(32, (os.cpu_count() or 1) + 4)
# Per kernel: 5 listening ports, 5 connections to the kernel, a mailbox per libzmq socket (10, and 2 for the
# shell's monitor), the worker's own link (4) and the kernel's pidfd: 27. A proxy thread per channel added two
# steering sockets per channel (37 in all).
FDS_PER_KERNEL = 28


@pytest.mark.timeout(400)  # ten kernels started one by one on a loaded two-core machine
def test_a_workers_threads_do_not_grow_with_its_kernels(tmp_path: Path) -> None:
    """One user, one kernel, then ten: the worker has no more threads than its executor may add, fewer
    descriptors per kernel than FDS_PER_KERNEL, and all ten kernels run 1+1 through their relays."""
    require_root()
    with scale_host(tmp_path, 1, per_user=KERNELS, per_host=KERNELS) as host:
        member = host.members[0]
        host.start(member)
        one = usage(member.worker)
        for _ in range(KERNELS - 1):
            host.start(member)
        assert host.execute_all() == KERNELS

        def within_bounds() -> bool:
            # libzmq's reaper closes the sockets of a finished request or client a moment after close(): wait.
            ten = usage(member.worker)
            assert ten.threads - one.threads <= EXECUTOR_THREADS, f"threads: {one.threads} -> {ten.threads}"
            per_kernel = (ten.fds - one.fds) / (KERNELS - 1)
            assert per_kernel <= FDS_PER_KERNEL, f"{per_kernel:.1f} descriptors per kernel: {ten.fd_kinds}"
            return True

        eventually(within_bounds, "the worker's threads and descriptors with ten kernels")
        assert host.lost_workers() == []

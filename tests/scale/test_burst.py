"""Many kernel starts at once (issue 17, Scale: "30 kernel starts at once from 10 users: all succeed (or get
limit_reached exactly where limits say), no worker lost"), with spares on, as a host runs by default.

While the broker's disk is slow: each start makes the broker commit the kernel's record to its state store
(SQLite, synchronous=FULL); on a loaded host each fsync takes long. The broker used to handle every worker
message that was waiting before it let any other task run, so a burst held its event loop for seconds: no
heartbeat went out, every worker (the auth pool too) left with "broker silent", and the starts in flight were
answered worker_lost (bench_scale's burst after a churn). Here strace delays the broker's fsyncs as a busy disk
does, and a burst of starts from two users on second connections must all be answered, with no worker lost.

At the limits: a start was counted twice from its kernel's record (sent at spawn, or when it takes a spare)
to its reply, so a burst near a limit got spurious refusals; and a spare started in the place of a start still
under way had that start's record refused. Here a burst meets both limits at once and must be refused
exactly where they say, with no spare kept in a start's place.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pytest
from support.ci import require_root
from support.eventually import eventually

from scale.scalehost import Member, burst_starts, scale_host
from ssd.errors import ErrorCode, RemoteError
from ssd.replies import KernelStartReply

pytestmark = pytest.mark.root

USERS, STARTS = 2, 6  # per user, at once
FSYNC_DELAY_US = 300_000  # what one commit costs on a disk busy with other work


def tracer_of(pid: int) -> int:
    """The pid tracing *pid* (0: none), from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("TracerPid:"):
            return int(line.split()[1])
    return 0


@contextmanager
def slow_fsync(pid: int) -> Iterator[None]:
    """Every fsync and fdatasync of *pid*'s main thread (the broker's event loop) takes FSYNC_DELAY_US longer."""
    inject = f"inject=fsync,fdatasync:delay_exit={FSYNC_DELAY_US}"
    command = ["strace", "-qq", "-o", "/dev/null", "-e", "trace=fsync,fdatasync", "-e", inject, "-p", str(pid)]
    strace = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        eventually(lambda: tracer_of(pid) == strace.pid or None, "strace attached to the broker")
        yield
    finally:
        strace.terminate()
        strace.wait(10)


@pytest.mark.timeout(120)  # 14 kernels started and stopped on a loaded two-core machine
def test_a_burst_of_starts_on_a_slow_disk_is_answered_and_loses_no_worker(tmp_path: Path) -> None:
    """2 users x 6 starts at once, each user's on a second connection, with the broker's fsyncs slowed and
    spares on (each user's first kernel leaves one; the burst fills the per-user limit, so it is taken or
    makes room): every start answered with a kernel, every worker (kernel and auth) still the one from before."""
    require_root()
    with scale_host(tmp_path, USERS, per_user=STARTS + 1, per_host=USERS * (STARTS + 1), spares=1) as host:
        for member in host.members:  # each user's kernel worker runs, and is known by pid
            host.start(member)
        pool = {pid for pid, (uid, cmd) in host.children().items() if uid == 0 and "ssd.workers" in cmd}
        with slow_fsync(host.broker):
            results = burst_starts(host, [STARTS] * USERS)
        failed = [repr(r) for r in results if not isinstance(r, KernelStartReply)]
        for member, reply in zip([m for m in host.members for _ in range(STARTS)], results, strict=True):
            if isinstance(reply, KernelStartReply):
                host.adopt(member, reply)
        assert failed == [], f"{len(failed)} of {len(results)} starts failed: {failed[:3]}"
        assert host.lost_workers() == []
        assert pool <= set(host.children()), "an auth worker was restarted"
        log = host.daemon.log()
        assert "missed" not in log, "the broker found its workers silent"
        assert "broker silent" not in log, "workers found the broker silent"


def spares_of(member: Member, count: int) -> bool:
    """Whether *member* has *count* spare kernels."""
    return len(member.client.kernel_list(spares=True)) == count


def test_a_burst_at_both_limits_with_spares_is_refused_exactly_where_the_limits_say(tmp_path: Path) -> None:
    """3 users, max_per_user=3, max_per_host=9, spares on: each runs a kernel and gets a spare, then all start
    3 more at once. Exactly two starts per user succeed (one may take the spare, the other makes it room), the
    3 others are refused limit_reached; no spare is left (every user at their limit, the host full); no
    worker lost, no kernel record refused."""
    require_root()
    users, per_user, starts = 3, 3, 3
    with scale_host(tmp_path, users, per_user=per_user, per_host=users * per_user, spares=1) as host:
        for member in host.members:
            host.start(member, "ipykernel")
        for member in host.members:
            eventually(partial(spares_of, member, 1), what=f"{member.user.name}'s spare")
        results = burst_starts(host, [starts] * users)
        for member, reply in zip([m for m in host.members for _ in range(starts)], results, strict=True):
            if isinstance(reply, KernelStartReply):
                host.adopt(member, reply)
        refused = [r for r in results if isinstance(r, RemoteError) and r.code == ErrorCode.LIMIT_REACHED]
        others = [repr(r) for r in results if not isinstance(r, KernelStartReply) and r not in refused]
        assert others == []
        assert [len(m.kernels) for m in host.members] == [per_user] * users
        assert len(refused) == users * (starts + 1 - per_user)
        for member in host.members:
            eventually(partial(spares_of, member, 0), what=f"no spare of {member.user.name}")
            assert {k.kernel_id for k in member.client.kernel_list()} == {k.kernel_id for k in member.kernels}
        assert host.lost_workers() == []
        assert "beyond its user" not in host.daemon.log(), "a kernel record was refused beyond its user's limit"

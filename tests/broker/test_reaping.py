"""The kernel book reaps only its record user's own processes, never a worker the broker supervises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from support.eventually import eventually

from ssd.broker.kernels import KernelBook, RecordRefused, may_reap, process_uids
from ssd.kernels.proc import start_ticks
from ssd.kernels.record import KernelRecord
from ssd.state import open_state

OTHER_UID = 54_321


def _record(user: str, kernel_id: str, pid: int) -> bytes:
    ticks = start_ticks(pid)
    assert ticks is not None
    fields: dict[str, object] = {
        "kernel_id": kernel_id, "user": user, "name": "k", "env": "/e", "env_name": "e", "kind": "ipykernel",
        "pid": pid, "start_ticks": ticks, "started": 0.0, "connection": {}, "connection_file": "/c",
        "log_file": "/l", "cwd": "/", "argv": [], "environ": {},
    }  # fmt: skip
    return msgspec.json.encode(msgspec.convert(fields, KernelRecord))


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def test_may_reap_only_the_users_own_unsupervised_process() -> None:
    """Real and effective uid both the user's, and no supervised child; anything unknown is refused."""
    assert may_reap((1000, 1000), 1000, supervised=False)
    assert not may_reap((1001, 1001), 1000, supervised=False)
    assert not may_reap((1000, 0), 1000, supervised=False)  # a set-uid program: not the user's alone
    assert not may_reap((1000, 1000), 1000, supervised=True)  # a worker or the edge: its supervisor waits
    assert not may_reap(None, 1000, supervised=False)  # no such process
    assert not may_reap((1000, 1000), None, supervised=False)  # no such user
    assert process_uids(os.getpid()) == (os.getuid(), os.geteuid())
    assert process_uids(2**22 + 1) is None


def test_a_record_naming_another_users_process_or_a_worker_is_refused(tmp_path: Path) -> None:
    """A live process that is not the user's, or that the broker supervises, cannot be named in a record."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        theirs = KernelBook(open_state(tmp_path), uid_of=lambda user: OTHER_UID)
        with pytest.raises(RecordRefused, match=f"naming pid {child.pid}"):
            theirs.put("bob", "k1", _record("bob", "k1", child.pid))
        supervised = KernelBook(
            open_state(tmp_path), uid_of=lambda user: os.getuid(), supervised=lambda pid: pid == child.pid
        )
        with pytest.raises(RecordRefused, match=f"naming pid {child.pid}"):
            supervised.put("bob", "k1", _record("bob", "k1", child.pid))
        mine = KernelBook(open_state(tmp_path), uid_of=lambda user: os.getuid())
        assert mine.put("bob", "k1", _record("bob", "k1", child.pid))
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait()


def test_an_ended_child_is_reaped_only_when_it_is_the_users(tmp_path: Path) -> None:
    """Dropping the record of an exited child reaps it only while its uid is the record user's."""
    owner = [os.getuid()]
    book = KernelBook(open_state(tmp_path), uid_of=lambda user: owner[0])
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    assert book.put("bob", "k1", _record("bob", "k1", child.pid))
    assert child.stdin is not None
    child.stdin.close()
    eventually(lambda: _state(child.pid) == "Z", "the child a zombie")
    owner[0] = OTHER_UID  # as if the process were another user's
    assert book.drop("bob", "k1")
    book.reap_orphans()
    assert _state(child.pid) == "Z", "another user's process was reaped"
    owner[0] = os.getuid()
    book.reap_orphans()
    assert _state(child.pid) is None, "the user's own ended kernel was not reaped"
    child.wait()  # the book collected it: Popen copes with that

"""The broker's book of running kernels: persisted, per user, and counted against the host limit.

Only a user's own kernel worker may write a user's records; the broker hands
them back to the next kernel worker of that user (re-adoption after a crash or
a daemon restart). That worker is its user's to control (DESIGN §1), so the
book caps what it may store: at most ``per_user`` records per user (the
per-user kernel limit, counted here and not in the worker) of at most
``wire.MAX_RECORD`` bytes each, and the host's count takes each user's records
at most up to that cap. The broker is a child subreaper, so a kernel whose worker
died becomes the broker's child and is reaped here when its record is dropped;
but a record's pid is its worker's word, and the broker's other children (other
users' workers, the edge) are the supervisors' to wait for. So the book reaps
only a process that runs as the record's user and is none of the broker's
supervised children (``may_reap``), and refuses a record naming a live process
of someone else.
"""

from __future__ import annotations

import ctypes
import logging
import pwd
import sqlite3
import time
from collections.abc import Callable

import msgspec

from ssd.kernels.proc import reap, start_ticks
from ssd.kernels.record import KernelRecord
from ssd.workers import wire

__all__ = ["KernelBook", "RecordRefused", "become_subreaper", "may_reap", "process_uids", "record_cap"]

log = logging.getLogger(__name__)

_PR_SET_CHILD_SUBREAPER = 36
# Records one user may keep when the host sets neither a per-user nor a per-host limit.
HARD_CAP = 1000


def record_cap(max_per_user: int, max_per_host: int) -> int:
    """The most records the book keeps for one user: the per-user limit, else the host's, else HARD_CAP."""
    return min(max_per_user or max_per_host or HARD_CAP, HARD_CAP)


def process_uids(pid: int) -> tuple[int, int] | None:
    """The real and effective uid of *pid*, a zombie's too (/proc/PID/status); None if there is no such pid."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("Uid:"):
                    real, effective = line.split()[1:3]
                    return int(real), int(effective)
    except (OSError, ValueError):
        return None
    return None


def may_reap(uids: tuple[int, int] | None, user_uid: int | None, supervised: bool) -> bool:
    """Whether the book may collect a process of *uids* for a record of the user of *user_uid*: only the
    user's own (real and effective uid), never one of the broker's supervised children (a worker, the edge)."""
    return uids is not None and user_uid is not None and not supervised and uids == (user_uid, user_uid)


def _uid_of(user: str) -> int | None:
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


class RecordRefused(ValueError):
    """A kernel record the book does not store; the message says what it was (for the log)."""


def become_subreaper() -> bool:
    """Adopt orphaned descendants (kernels whose worker died) instead of init, so they get reaped."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


class KernelBook:
    """Kernel records by id, written through to the ``kernels`` table."""

    def __init__(
        self,
        db: sqlite3.Connection,
        per_user: int = HARD_CAP,
        *,
        supervised: Callable[[int], bool] = lambda pid: False,
        uid_of: Callable[[str], int | None] = _uid_of,
    ) -> None:
        self._db = db
        self.per_user = per_user
        self._supervised = supervised  # is this pid a worker or edge process the broker waits for itself?
        self._uid_of = uid_of
        self._records: dict[str, tuple[str, KernelRecord, bytes]] = {}  # id -> (user, record, its JSON)
        self._unreaped: set[tuple[int, int, str]] = set()  # (pid, start ticks, user) of ended kernels
        for kernel_id, user, record in db.execute("SELECT kernel_id, user, record FROM kernels"):
            try:
                self._records[kernel_id] = (user, msgspec.json.decode(record, type=KernelRecord), bytes(record))
            except (msgspec.DecodeError, msgspec.ValidationError):
                log.error("unreadable kernel record %s in the state store dropped", kernel_id)

    def count(self, user: str | None = None, *, spares: bool = True) -> int:
        """Kernels of *user*; without one, on this host, each user's counted at most up to the per-user cap
        (records a store of an older version kept beyond it cannot crowd out other users). Spare kernels
        count unless *spares* is False."""
        per_user: dict[str, int] = {}
        for owner, record, _ in self._records.values():
            if (user is None or owner == user) and (spares or not record.spare):
                per_user[owner] = per_user.get(owner, 0) + 1
        if user is not None:
            return per_user.get(user, 0)
        return sum(min(n, self.per_user) for n in per_user.values())

    def spares(self) -> list[tuple[str, str]]:
        """(user, kernel id) of every spare kernel, the newest first."""
        found = sorted(((r.started, o, r.kernel_id) for o, r, _ in self._records.values() if r.spare), reverse=True)
        return [(owner, kernel_id) for _, owner, kernel_id in found]

    def owner(self, kernel_id: str) -> str | None:
        """Whose kernel *kernel_id* is (None: no such record)."""
        entry = self._records.get(kernel_id)
        return entry[0] if entry is not None else None

    def users(self) -> set[str]:
        """Users with recorded kernels (their kernel workers are started with the broker)."""
        return {owner for owner, _, _ in self._records.values()}

    def put(self, user: str, kernel_id: str, body: bytes) -> bool:
        """Store a record sent by *user*'s kernel worker (True: the book changed); RecordRefused for one that
        names another user, one too large, and a new one beyond the user's cap."""
        if len(body) > wire.MAX_RECORD:
            raise RecordRefused(f"a kernel record of {len(body)} bytes")
        if kernel_id not in self._records and self.count(user) >= self.per_user:
            raise RecordRefused(f"a kernel record beyond its user's {self.per_user}")
        try:
            record = msgspec.json.decode(body, type=KernelRecord)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise RecordRefused(f"an invalid kernel record ({exc})") from None
        owner = self._records.get(kernel_id, (user,))[0]
        if record.user != user or record.kernel_id != kernel_id or owner != user:
            raise RecordRefused(f"a record for kernel {kernel_id[:64]!r} of {owner}")
        self._check_names_own(user, record)
        self._db.execute(
            "INSERT OR REPLACE INTO kernels (kernel_id, user, pid, record, updated) VALUES (?, ?, ?, ?, ?)",
            (kernel_id, user, record.pid, body, time.time()),
        )
        old = self._records.get(kernel_id)
        self._records[kernel_id] = (user, record, body)
        if old is not None and old[1].pid != record.pid:
            self._reap(old[1])  # restarted: the old process may have been our orphan
        return True

    def drop(self, user: str, kernel_id: str) -> bool:
        """Forget a kernel of *user* (shut down or dead) and reap it if it ended as our child."""
        entry = self._records.get(kernel_id)
        if entry is None or entry[0] != user:
            return False
        self._db.execute("DELETE FROM kernels WHERE kernel_id = ?", (kernel_id,))
        del self._records[kernel_id]
        self._reap(entry[1])
        return True

    def _check_names_own(self, user: str, record: KernelRecord) -> None:
        """Refuse a record whose pid is a process (that started at its ticks) of another user, or ours."""
        if start_ticks(record.pid) != record.start_ticks:
            return  # no such process (any more): a dead kernel's record, kept for a restart
        uids = process_uids(record.pid)
        if not may_reap(uids, self._uid_of(user), self._supervised(record.pid)):
            raise RecordRefused(f"a record naming pid {record.pid}, a process of uid {uids} (not {user}'s kernel)")

    def _reap(self, record: KernelRecord) -> None:
        self._unreaped.add((record.pid, record.start_ticks, record.user))
        self.reap_orphans()

    def _reap_own(self, pid: int, ticks: int, user: str) -> int | None:
        """Reap *pid* if it is the process that started at *ticks*, runs as *user* and is no supervised child."""
        if start_ticks(pid) != ticks or not may_reap(process_uids(pid), self._uid_of(user), self._supervised(pid)):
            return None
        return reap(pid)

    def reap_orphans(self) -> None:
        """Collect ended kernels that became our children (a multi-threaded process is reapable only once
        all its threads exited, so this is retried from the heartbeat loop); never touch a reused pid, a
        process of another user or a worker the supervisor waits for."""
        for pid, ticks, user in list(self._unreaped):
            if start_ticks(pid) != ticks or self._reap_own(pid, ticks, user) is not None:
                self._unreaped.discard((pid, ticks, user))
        for owner, record, _ in self._records.values():  # listed but dead (kept for a restart): reap now
            self._reap_own(record.pid, record.start_ticks, owner)

    def record_of(self, user: str, kernel_id: str) -> KernelRecord | None:
        """*user*'s record of *kernel_id* (None: no such record, or another user's)."""
        entry = self._records.get(kernel_id)
        return entry[1] if entry is not None and entry[0] == user else None

    def records_of(self, user: str) -> bytes:
        """The JSON list of *user*'s records, for the ADOPT message."""
        bodies = [body for owner, _, body in self._records.values() if owner == user]
        return b"[" + b",".join(bodies) + b"]"

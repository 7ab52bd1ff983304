"""The pure parts of treating a per-user worker as its user's: topics, rates, the record cap, event checks,
admission, and sealed boxes that only the server can make."""

from __future__ import annotations

import json
import time
from pathlib import Path

import msgspec
import pytest
import zmq

from ssd.broker.admission import Admission
from ssd.broker.kernel_service import ConnectionSealer, KernelService
from ssd.broker.kernels import KernelBook, RecordRefused, record_cap
from ssd.broker.quota import CUT_WINDOW, KILL_AFTER, CutStrikes, LogThrottle, TokenBucket, Verdict, WorkerQuota
from ssd.broker.registry import Pending, Registry, WorkerRecord
from ssd.broker.sessions import SessionStore
from ssd.broker.worker_events import WorkerEvents
from ssd.config import Config, EnvsConfig, KernelsConfig
from ssd.errors import ErrorCode
from ssd.kernels.record import KernelRecord
from ssd.keys import KeyPair
from ssd.messages import EnvRemoveRequest, KernelStartRequest
from ssd.sealed import SealError, open_sealed, seal, sealed_context
from ssd.state import open_state
from ssd.topics import KERNEL, user_topic
from ssd.users import Account


def test_no_users_topic_is_a_prefix_of_anothers() -> None:
    """alice's topic is no prefix of alice2's or alice.bob's; a name cannot hold the terminator."""
    alice = user_topic(KERNEL, "alice")
    assert alice == "kernel.alice/"
    for other in ("alice2", "alice.bob", "alice.", "alice-", "alice$"):
        assert not user_topic(KERNEL, other).startswith(alice)
    with pytest.raises(ValueError, match="user name"):
        user_topic(KERNEL, "alice/bob")


def test_token_bucket_refills_at_its_rate() -> None:
    """A burst, then one token per 1/rate seconds."""
    bucket = TokenBucket(rate=10.0, burst=3.0)
    assert [bucket.take(1, 0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(1, 0.1)
    assert not bucket.take(1, 0.1)


def test_a_flood_is_killed_and_a_steady_worker_is_not() -> None:
    """KILL_AFTER drops within the window stop the worker; a worker within its rate never drops."""
    flood = WorkerQuota()
    verdicts = [flood.judge(10, 0.0) for _ in range(20000)]
    assert Verdict.DROP in verdicts
    assert verdicts[-1] is Verdict.KILL
    steady = WorkerQuota()
    assert all(steady.judge(1000, n * 0.01) is Verdict.ACCEPT for n in range(10000))  # 100 a second
    assert KILL_AFTER > 1


def test_log_throttle_counts_what_it_suppressed() -> None:
    """One line per key and interval, then the number of lines held back."""
    throttle = LogThrottle(interval=10.0)
    assert throttle.allow("k", 0.0) == 0
    assert throttle.allow("k", 1.0) is None
    assert throttle.allow("k", 2.0) is None
    assert throttle.allow("k", 11.0) == 2


def test_a_second_cut_within_the_window_stops_the_user() -> None:
    """The flood guard's cuts count per user: a second within CUT_WINDOW says stop; one alone, or late, not."""
    strikes = CutStrikes()
    assert not strikes.strike("bob", 0.0)
    assert not strikes.strike("alice", 1.0)
    assert strikes.strike("bob", 2.0)
    assert not strikes.strike("bob", 3.0)  # counted afresh after a stop
    assert not strikes.strike("alice", 1.0 + CUT_WINDOW + 1)  # alice's first cut has expired


def _record(user: str, kernel_id: str, **changes: object) -> bytes:
    fields: dict[str, object] = {
        "kernel_id": kernel_id, "user": user, "name": "k", "env": "/e", "env_name": "e", "kind": "ipykernel",
        "pid": 999_999, "start_ticks": 0, "started": 0.0, "connection": {}, "connection_file": "/c",
        "log_file": "/l", "cwd": "/", "argv": [], "environ": {},
    }  # fmt: skip
    fields.update(changes)
    return msgspec.json.encode(msgspec.convert(fields, KernelRecord))


def test_kernel_book_caps_each_user_and_the_hosts_count(tmp_path: Path) -> None:
    """A user's records stop at the cap (in memory and in SQLite); the host counts each user up to it."""
    book = KernelBook(open_state(tmp_path), per_user=3)
    for n in range(3):
        assert book.put("bob", f"k{n}", _record("bob", f"k{n}"))
    with pytest.raises(RecordRefused, match="beyond"):
        book.put("bob", "k9", _record("bob", "k9"))
    assert book.put("bob", "k0", _record("bob", "k0", name="renamed"))  # an update is no new record
    with pytest.raises(RecordRefused, match="of bob"):
        book.put("alice", "k0", _record("alice", "k0"))
    with pytest.raises(RecordRefused, match="bytes"):
        book.put("alice", "big", _record("alice", "big", environ={"X": "x" * (3 << 20)}))
    assert book.count("bob") == 3
    assert book.count() == 3
    reopened = KernelBook(open_state(tmp_path), per_user=2)  # an older store may hold more than the cap
    assert reopened.count("bob") == 3
    assert reopened.count() == 2
    assert record_cap(10, 100) == 10
    assert record_cap(0, 100) == 100
    assert record_cap(0, 0) == 1000


def _worker(service: str, user: str = "bob") -> WorkerRecord:
    return WorkerRecord(f"key-{service}-{user}", b"r", service, 1, 1, time.monotonic(), user)


def test_worker_events_speak_only_of_their_users_things(tmp_path: Path) -> None:
    """Topics come from the worker's user; another user's kernel, an unknown kind, an extra field
    (a sealed box) and an operation the worker never announced are refused."""
    book = KernelBook(open_state(tmp_path), per_user=5)
    book.put("alice", "a1", _record("alice", "a1"))
    book.put("bob", "b1", _record("bob", "b1"))
    refused: list[str] = []
    events = WorkerEvents(book, lambda worker, what: refused.append(what))
    kernel, env = _worker("kernel"), _worker("env")
    state = {"name": "k", "env": "/e", "kind": "ipykernel", "state": "ready"}
    ok = events.accept(kernel, b"kernel_state", json.dumps({"kernel_id": "b1", **state}).encode())
    assert ok == ("kernel.bob/", "kernel_state", {"kernel_id": "b1", **state})
    assert events.accept(kernel, b"kernel_state", json.dumps({"kernel_id": "a1", **state}).encode()) is None
    boxed = {"kernel_id": "b1", **state, "sealed_connection": {}}
    assert events.accept(kernel, b"kernel_state", json.dumps(boxed).encode()) is None
    assert events.accept(kernel, b"kernel.alice.bob", json.dumps({"kernel_id": "b1", **state}).encode()) is None
    assert events.accept(env, b"kernel_state", json.dumps({"kernel_id": "b1", **state}).encode()) is None
    progress = {"operation": "op1", "kind": "create", "target": "t", "phase": "p", "line": None, "percent": None}
    running = json.dumps({**progress, "state": "running"}).encode()
    assert events.accept(env, b"env_progress", running) is None  # not announced yet
    events.note_reply(env, "env_create_request", b'{"status": "ok", "operation": "op1"}')
    accepted = events.accept(env, b"env_progress", running)
    assert accepted is not None
    assert accepted[0] == "env_progress.bob/"
    assert events.accept(env, b"env_progress", json.dumps({**progress, "state": "done"}).encode()) is not None
    assert events.accept(env, b"env_progress", running) is None  # its last event was sent
    assert len(refused) == 6


def test_admission_counts_in_the_broker(tmp_path: Path) -> None:
    """Per-user and per-host limits from the book plus starts in flight; variables and admin groups."""
    config = Config(
        kernels=KernelsConfig(max_per_user=2, max_per_host=3), envs=EnvsConfig(admin_deny_groups=["students"])
    )
    db = open_state(tmp_path)
    book = KernelBook(db, per_user=2)
    registry = Registry()
    sealer = ConnectionSealer(SessionStore(db), KeyPair(*zmq.curve_keypair()))
    kernels = KernelService(book, registry, config.kernels, sealer=sealer, changed=None)
    groups = {"alice": frozenset({"alice"}), "bob": frozenset({"bob", "students"})}
    admission = Admission(config.envs, kernels, lambda name: Account(name, 1, 1, "/", groups[name]))
    kernel_start = admission.checks()["kernel_start_request"]
    assert kernel_start("bob", KernelStartRequest(env="e")) is None
    book.put("bob", "b1", _record("bob", "b1"))
    start = KernelStartRequest(env="e")
    registry.admit(Pending(b"1", "kernel", [], {}, "c", "kernel_start_request", start, 0.0, user="bob"))
    refused = kernel_start("bob", KernelStartRequest(env="e"))
    assert refused is not None
    assert refused["ename"] == ErrorCode.LIMIT_REACHED
    assert "per user" in refused["evalue"]
    book.put("alice", "a1", _record("alice", "a1"))
    host = kernel_start("alice", KernelStartRequest(env="e"))
    assert host is not None
    assert "3 kernels" in host["evalue"]
    variables = kernel_start("alice", KernelStartRequest(env="e", env_vars={"LD_PRELOAD": "x"}))
    assert variables is not None
    assert variables["ename"] == "env_var_refused"
    assert admission.env_admin("alice", EnvRemoveRequest(env="e")) is None
    denied = admission.env_admin("bob", EnvRemoveRequest(env="e"))
    assert denied is not None
    assert denied["ename"] == ErrorCode.NOT_ALLOWED


def test_only_the_server_seals_a_box_that_opens() -> None:
    """A box sealed with the server's key opens with its public key; one sealed by anyone else does not."""
    server, other, client = (zmq.curve_keypair() for _ in range(3))
    context = sealed_context("k1")
    box = seal(b"secret", [client[0]], context, sender_public=server[0], sender_secret=server[1])
    assert open_sealed(box, client[0], client[1], context, sender=server[0]) == b"secret"
    forged = seal(b"forged", [client[0]], context, sender_public=server[0], sender_secret=other[1])
    with pytest.raises(SealError):
        open_sealed(forged, client[0], client[1], context, sender=server[0])
    with pytest.raises(SealError):
        open_sealed(box, client[0], client[1], context, sender=other[0])
    with pytest.raises(SealError):
        open_sealed({**box, "v": 1}, client[0], client[1], context, sender=server[0])

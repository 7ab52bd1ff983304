"""The broker's one interface to kernels (``KernelService``): records, adoption, sealing and the idle rule,
over a real kernel book in a real state store."""

from __future__ import annotations

import json
import time
from pathlib import Path

import msgspec
import pytest
import zmq

from ssd.broker.kernel_service import ConnectionSealer, KernelService
from ssd.broker.kernels import KernelBook, RecordRefused
from ssd.broker.registry import Pending, Registry, WorkerRecord
from ssd.broker.sessions import SessionStore
from ssd.config import KernelsConfig
from ssd.errors import ErrorCode
from ssd.kernels.connection import served_connection
from ssd.kernels.record import KernelRecord
from ssd.keys import KeyPair
from ssd.messages import KernelStartRequest
from ssd.sealed import open_sealed, sealed_context
from ssd.state import open_state

CONNECTION = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5,
              "ip": "/run/k", "transport": "ipc", "key": "secret", "signature_scheme": "hmac-sha256",
              "kernel_name": "python3"}  # fmt: skip
RELAY = {"ip": "10.0.0.5", "ports": {"shell": 41, "iopub": 42, "stdin": 43, "control": 44, "hb": 45},
         "curve_publickey": "P" * 40, "curve_secretkey": "S" * 40}  # fmt: skip


def _record(user: str, kernel_id: str) -> KernelRecord:
    return KernelRecord(
        kernel_id=kernel_id, user=user, name="k", env="/e", env_name="e", kind="ipykernel", pid=999_999,
        start_ticks=0, started=0.0, connection=CONNECTION, connection_file="/c", log_file="/l", cwd="/",
        argv=[], environ={}, relay=RELAY,
    )  # fmt: skip


def _worker(service: str, user: str | None = "bob") -> WorkerRecord:
    return WorkerRecord(f"key-{service}-{user}", b"r", service, 1, 1, time.monotonic(), user)


class Service:
    """A kernel service over a fresh store, with the server's keys and a count of its change notices."""

    def __init__(self, tmp_path: Path) -> None:
        db = open_state(tmp_path)
        self.sessions = SessionStore(db)
        self.server = KeyPair(*zmq.curve_keypair())
        self.changes = 0
        sealer = ConnectionSealer(self.sessions, self.server)
        self.kernels = KernelService(KernelBook(db), Registry(), KernelsConfig(), sealer=sealer, changed=self.changed)

    def changed(self) -> None:
        self.changes += 1


def test_records_come_only_from_the_users_kernel_worker_and_go_back_on_adoption(tmp_path: Path) -> None:
    """A kernel worker's record is kept (and the change told); an env worker's is refused; the next kernel
    worker of that user, and no other worker, gets the records back; an empty body forgets the kernel."""
    service = Service(tmp_path)
    kernels, bob = service.kernels, _worker("kernel")
    kernels.record(bob, "k1", msgspec.json.encode(_record("bob", "k1")))
    assert service.changes == 1
    assert kernels.owner("k1") == "bob"
    assert kernels.users() == ["bob"]
    with pytest.raises(RecordRefused, match="a kernel record"):
        kernels.record(_worker("env"), "k2", msgspec.json.encode(_record("bob", "k2")))
    adopted = kernels.adoption(_worker("kernel"))
    assert adopted is not None
    assert [entry["kernel_id"] for entry in json.loads(adopted)] == ["k1"]
    assert json.loads(kernels.adoption(_worker("kernel", "alice")) or b"") == []
    assert kernels.adoption(_worker("env")) is None
    assert kernels.keeps_worker(bob)
    assert not kernels.keeps_worker(_worker("env"))
    kernels.record(bob, "k1", b"")
    assert service.changes == 2
    assert kernels.owner("k1") is None
    assert not kernels.keeps_worker(bob)  # an idle kernel worker without kernels may now be retired


def test_a_ready_kernels_connection_is_sealed_to_its_users_keys_only(tmp_path: Path) -> None:
    """ready and restarted events carry the relay's connection info sealed to bob's session key, which opens
    it as the server's; other states, other workers' events and a user without a session get nothing."""
    service = Service(tmp_path)
    kernels, bob = service.kernels, _worker("kernel")
    kernels.record(bob, "k1", msgspec.json.encode(_record("bob", "k1")))
    ready = {"kernel_id": "k1", "state": "ready"}
    assert kernels.complete_event(bob, "kernel_state", ready) == ready  # no session yet: nobody to seal for
    client = zmq.curve_keypair()
    service.sessions.bind(client[0].decode(), "bob", 60.0)
    for state in ("ready", "restarted"):
        event = kernels.complete_event(bob, "kernel_state", {"kernel_id": "k1", "state": state})
        plain = open_sealed(
            event["sealed_connection"], client[0], client[1], sealed_context("k1"), sender=service.server.public
        )
        assert json.loads(plain) == served_connection(_record("bob", "k1"))
    for worker, kind, content in (
        (bob, "kernel_state", {"kernel_id": "k1", "state": "dead"}),
        (bob, "env_progress", ready),
        (_worker("env"), "kernel_state", ready),
        (_worker("kernel", "alice"), "kernel_state", ready),  # not alice's kernel
    ):
        assert "sealed_connection" not in kernels.complete_event(worker, kind, content)


def test_starts_are_admitted_within_the_variables_and_limits(tmp_path: Path) -> None:
    """A variable off the allow-list is refused by name; the per-user limit counts the user's records."""
    db = open_state(tmp_path)
    sealer = ConnectionSealer(SessionStore(db), KeyPair(*zmq.curve_keypair()))
    limits = KernelsConfig(max_per_user=1, max_per_host=5)
    kernels = KernelService(KernelBook(db), Registry(), limits, sealer=sealer, changed=None)
    refused = kernels.admit_start("bob", KernelStartRequest(env="e", env_vars={"LD_PRELOAD": "/x.so"}))
    assert refused is not None
    assert refused["ename"] == ErrorCode.ENV_VAR_REFUSED
    assert kernels.admit_start("bob", KernelStartRequest(env="e")) is None
    kernels.record(_worker("kernel"), "k1", msgspec.json.encode(_record("bob", "k1")))  # no announcer: no notice
    limited = kernels.admit_start("bob", KernelStartRequest(env="e"))
    assert limited is not None
    assert limited["ename"] == ErrorCode.LIMIT_REACHED
    assert kernels.admit_start("alice", KernelStartRequest(env="e")) is None


class Starts:
    """Kernel starts of one user in flight at a real registry, held by that user's kernel worker."""

    def __init__(self, registry: Registry, user: str) -> None:
        self.registry, self.user = registry, user
        registry.expect(f"key-kernel-{user}", "kernel", user)
        self.worker = registry.register(f"key-kernel-{user}", b"r", "kernel", 1, 32)
        self.sent = 0

    def send(self) -> Pending:
        """One more kernel_start admitted and at the worker."""
        self.sent += 1
        pending = Pending(
            str(self.sent).encode() + self.user.encode(), "kernel", [], {}, "c", "kernel_start_request",
            KernelStartRequest(env="e"), 0.0, user=self.user,
        )  # fmt: skip
        self.registry.admit(pending)
        self.registry.assign(pending, self.worker)
        return pending

    def answer(self, kernels: KernelService, pending: Pending, kernel_id: str) -> None:
        """The worker's ok reply to *pending*, naming *kernel_id*, passes the broker."""
        assert self.registry.complete(self.worker.key, pending.request_id) is pending
        kernels.answered(pending, json.dumps({"status": "ok", "kernel": {"kernel_id": kernel_id}}).encode())


def _spare(user: str, kernel_id: str) -> bytes:
    return msgspec.json.encode(msgspec.structs.replace(_record(user, kernel_id), spare=True))


def _limited(kernels: KernelService, user: str) -> str | None:
    refused = kernels.admit_start(user, KernelStartRequest(env="e"))
    return None if refused is None else str(refused["evalue"])


def test_a_start_is_counted_once_from_its_record_to_its_reply(tmp_path: Path) -> None:
    """max_per_user=2, max_per_host=3. Bob's start in flight whose kernel's record came (at spawn, or a spare
    he took) counts once, not as the record and the start both: alice and bob are admitted up to the limits
    exactly, before and after the replies, and a start lost with its worker counts no more."""
    db = open_state(tmp_path)
    registry = Registry()
    sealer = ConnectionSealer(SessionStore(db), KeyPair(*zmq.curve_keypair()))
    kernels = KernelService(
        KernelBook(db, 2), registry, KernelsConfig(max_per_user=2, max_per_host=3), sealer=sealer, changed=None
    )
    bob, alice = Starts(registry, "bob"), Starts(registry, "alice")
    bob_worker = _worker("kernel", "bob")
    kernels.record(bob_worker, "s1", _spare("bob", "s1"))  # bob's spare: not counted against a start
    cold = bob.send()
    kernels.record(bob_worker, "k1", msgspec.json.encode(_record("bob", "k1")))  # spawned, not ready yet
    warm = bob.send()
    kernels.record(bob_worker, "s1", msgspec.json.encode(_record("bob", "s1")))  # the spare, taken
    assert _limited(kernels, "alice") is None  # the host: 2 kernels (bob's starts), not 4
    assert "you already run 2 kernels" in (_limited(kernels, "bob") or "")
    alice.send()
    assert "3 kernels" in (_limited(kernels, "alice") or "")
    bob.answer(kernels, warm, "s1")
    bob.answer(kernels, cold, "k1")
    assert "3 kernels" in (_limited(kernels, "alice") or "")  # still 3: the records now
    registry.forget_worker(alice.worker.key)  # alice's start lost with her worker: no record, no start
    assert _limited(kernels, "alice") is None
    kernels.record(bob_worker, "k1", b"")
    assert _limited(kernels, "bob") is None


def test_spares_over_the_hosts_limit_count_starts_without_a_record(tmp_path: Path) -> None:
    """max_per_host=2: bob's kernel and alice's spare fill the host; alice's start in flight (no record yet)
    takes the spare's place, so the spare is to stop; once her kernel's record came it is counted once."""
    db = open_state(tmp_path)
    registry = Registry()
    sealer = ConnectionSealer(SessionStore(db), KeyPair(*zmq.curve_keypair()))
    for user in ("alice", "bob"):  # spares of a user without a session would all go
        sealer.sessions.bind(zmq.curve_keypair()[0].decode(), user, 60.0)
    kernels = KernelService(KernelBook(db), registry, KernelsConfig(max_per_host=2), sealer=sealer, changed=None)
    kernels.record(_worker("kernel", "bob"), "k1", msgspec.json.encode(_record("bob", "k1")))
    kernels.record(_worker("kernel", "alice"), "s1", _spare("alice", "s1"))
    assert kernels.spares_to_stop() == {}
    Starts(registry, "alice").send()
    assert kernels.spares_to_stop() == {"alice": ["s1"]}
    kernels.record(_worker("kernel", "alice"), "k2", msgspec.json.encode(_record("alice", "k2")))
    assert kernels.spares_to_stop() == {"alice": ["s1"]}  # 2 kernels and the spare: over by one, not two
    kernels.record(_worker("kernel", "alice"), "s1", b"")
    assert kernels.spares_to_stop() == {}

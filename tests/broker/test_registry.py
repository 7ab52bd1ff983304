"""The broker's bookkeeping of workers and requests, without sockets."""

from __future__ import annotations

import itertools

import pytest

from ssd.broker.registry import Pending, Registry, WorkerRecord
from ssd.messages import EchoRequest

_ids = itertools.count(1)


def pending(client: str = "client-a", service: str = "diag", queued_at: float = 0.0) -> Pending:
    """A request from *client* for *service* with a fresh request id."""
    return Pending(
        request_id=b"%d" % next(_ids),
        service=service,
        idents=[b"rid"],
        parent={"msg_id": "m"},
        client_key=client,
        msg_type="echo_request",
        content=EchoRequest(),
        queued_at=queued_at,
    )


def worker(registry: Registry, key: str, service: str = "diag", capacity: int = 2) -> WorkerRecord:
    """Expect and register a worker with *key*."""
    registry.expect(key, service)
    return registry.register(key, key.encode(), service, pid=100, capacity=capacity)


def submit(registry: Registry, request: Pending) -> WorkerRecord:
    """Admit *request* and assign it to the picked worker, as the backend does."""
    registry.admit(request)
    record = registry.pick(request.service)
    assert record is not None
    registry.assign(request, record)
    return record


def test_register_refuses_unexpected_key() -> None:
    """A worker key the supervisor never spawned cannot register."""
    registry = Registry()
    assert not registry.is_expected("stranger")
    with pytest.raises(ValueError, match="not spawned"):
        registry.register("stranger", b"r", "diag", pid=1, capacity=1)
    assert registry.workers == {}


def test_register_refuses_wrong_service() -> None:
    """A spawned worker cannot register for a service it was not spawned for."""
    registry = Registry()
    registry.expect("k1", "diag")
    assert registry.is_expected("k1")
    with pytest.raises(ValueError, match="auth"):
        registry.register("k1", b"r", "auth", pid=1, capacity=1)
    assert registry.workers == {}


def test_register_records_worker_with_at_least_capacity_one() -> None:
    """Registration records the worker; a capacity below one is raised to one."""
    registry = Registry()
    record = worker(registry, "k1", capacity=0)
    assert registry.workers == {"k1": record}
    assert (record.routing_id, record.service, record.pid, record.capacity) == (b"k1", "diag", 100, 1)


def test_pick_prefers_least_loaded_worker_with_room() -> None:
    """pick() takes the worker of the service with the fewest requests, skipping full ones."""
    registry = Registry()
    one, two = worker(registry, "k1", capacity=2), worker(registry, "k2", capacity=2)
    worker(registry, "other", service="env", capacity=10)
    assert submit(registry, pending()) in (one, two)
    first = registry.pick("diag")
    assert first is not None
    assert len(first.inflight) == 0
    submit(registry, pending())
    submit(registry, pending())
    assert {len(one.inflight), len(two.inflight)} == {1, 2}
    submit(registry, pending())
    assert len(one.inflight) == len(two.inflight) == 2
    assert registry.pick("diag") is None
    assert registry.pick("nothing") is None


def test_admit_and_complete_count_per_client() -> None:
    """admit() counts a request against its client; complete() takes it off again."""
    registry = Registry()
    record = worker(registry, "k1", capacity=4)
    a1, a2, b1 = pending("a"), pending("a"), pending("b")
    for request in (a1, a2, b1):
        submit(registry, request)
    assert (registry.client_load("a"), registry.client_load("b"), registry.client_load("c")) == (2, 1, 0)
    assert a1.worker_key == "k1"
    assert registry.complete("k1", a1.request_id) is a1
    assert registry.client_load("a") == 1
    assert registry.complete("k1", a1.request_id) is None  # a second reply is not counted twice
    assert registry.complete("nobody", a2.request_id) is None
    assert registry.complete("k1", a2.request_id) is a2
    assert registry.complete("k1", b1.request_id) is b1
    assert registry.per_client == {}
    assert registry.by_request == {}
    assert record.inflight == {}


def test_forget_worker_returns_its_inflight_requests() -> None:
    """A dead worker's requests come back (to be answered worker_lost) and stop counting."""
    registry = Registry()
    one = worker(registry, "k1", capacity=1)
    worker(registry, "k2", capacity=1)
    first, second = pending("a"), pending("a")
    submit(registry, first)
    submit(registry, second)
    lost_key = first.worker_key
    assert lost_key is not None
    lost = registry.forget_worker(lost_key)
    assert lost == ([first] if lost_key == one.key else [second])
    assert lost_key not in registry.workers
    assert not registry.is_expected(lost_key)
    assert registry.client_load("a") == 1
    assert registry.forget_worker(lost_key) == []


def test_queue_is_fifo_per_service() -> None:
    """Queued requests come out oldest first, per service."""
    registry = Registry()
    first, second, other = pending(), pending(), pending(service="env")
    for request in (first, second, other):
        registry.admit(request)
        registry.enqueue(request)
    assert registry.next_queued("diag") is first
    assert registry.next_queued("diag") is second
    assert registry.next_queued("diag") is None
    assert registry.next_queued("env") is other


def test_expired_queued_takes_only_old_requests() -> None:
    """expired_queued() removes requests queued before the cut-off and frees their client slots."""
    registry = Registry()
    old, new, other_old = pending("a", queued_at=1.0), pending("a", queued_at=5.0), pending("b", "env", 2.0)
    for request in (old, new, other_old):
        registry.admit(request)
        registry.enqueue(request)
    expired = registry.expired_queued(older_than=3.0)
    assert sorted(p.request_id for p in expired) == sorted([old.request_id, other_old.request_id])
    assert registry.client_load("a") == 1
    assert registry.client_load("b") == 0
    assert registry.next_queued("diag") is new
    assert registry.expired_queued(older_than=3.0) == []


def test_drain_returns_everything_and_resets() -> None:
    """drain() hands back queued and in-flight requests and leaves no counts behind."""
    registry = Registry()
    record = worker(registry, "k1", capacity=1)
    running, waiting = pending("a"), pending("b")
    submit(registry, running)
    registry.admit(waiting)
    registry.enqueue(waiting)
    drained = registry.drain()
    assert {p.request_id for p in drained} == {running.request_id, waiting.request_id}
    assert registry.by_request == {}
    assert registry.per_client == {}
    assert record.inflight == {}
    assert registry.next_queued("b") is None
    assert registry.next_queued("diag") is None


def test_silent_workers() -> None:
    """silent_workers() lists workers last heard from before the cut-off."""
    registry = Registry()
    quiet, talkative = worker(registry, "k1"), worker(registry, "k2")
    quiet.last_seen, talkative.last_seen = 10.0, 20.0
    assert registry.silent_workers(older_than=15.0) == [quiet]

"""Who the workers are, which requests each holds, and which wait for a worker.

Pure bookkeeping without sockets: the broker's backend loop feeds it events
and acts on what it returns, which keeps this logic testable on its own.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ssd.messages import RequestContent
from ssd.protocol import Content

__all__ = ["MAX_CAPACITY", "LoginAttempt", "Pending", "Registry", "WorkerRecord"]

MAX_CAPACITY = 256  # requests one worker may hold at once, whatever it claims


@dataclass(frozen=True)
class LoginAttempt:
    """A login in progress, for the throttle: who, from where, and whether PAM is asked."""

    name: str
    address: str
    pam: bool


@dataclass
class Pending:
    """A client request forwarded (or waiting to be forwarded) to a worker."""

    request_id: bytes
    service: str
    idents: list[bytes]
    parent: dict[str, Any]
    client_key: str
    msg_type: str
    content: RequestContent  # validated by the broker against the registry's struct
    queued_at: float
    user: str | None = None
    worker_key: str | None = None
    login: LoginAttempt | None = None
    per_user: bool = False  # served by the bound user's own worker
    # The broker's own request (an account check): its reply goes here, not to a client.
    on_answer: Callable[[Content], None] | None = None

    @property
    def route_user(self) -> str | None:
        """The user whose worker must serve this request (None: any worker of the service)."""
        return self.user if self.per_user else None


@dataclass
class WorkerRecord:
    """A registered worker process."""

    key: str  # its CURVE public key, as ZAP reported it
    routing_id: bytes
    service: str
    pid: int
    capacity: int
    last_seen: float
    user: str | None = None  # the account a per-user worker runs as
    inflight: dict[bytes, Pending] = field(default_factory=dict)
    last_active: float = field(default_factory=time.monotonic)


class Registry:
    """Workers by key, their in-flight requests, and per-service wait queues."""

    def __init__(self) -> None:
        self.expected: dict[str, tuple[str, str | None]] = {}  # worker key -> (service, user), at spawn
        self.workers: dict[str, WorkerRecord] = {}
        self.queues: dict[tuple[str, str | None], deque[Pending]] = {}
        self.by_request: dict[bytes, Pending] = {}
        self.per_client: dict[str, int] = {}

    def expect(self, key: str, service: str, user: str | None = None) -> None:
        """Allow a worker with *key* to register for *service* (of *user*, if per-user); called at spawn."""
        self.expected[key] = (service, user)

    def is_expected(self, key: str) -> bool:
        """Tell ZAP whether a backend key belongs to a worker we spawned."""
        return key in self.expected

    def register(self, key: str, routing_id: bytes, service: str, pid: int, capacity: int) -> WorkerRecord:
        """Record a READY worker; raise ValueError if it claims a service it was not spawned for."""
        expected = self.expected.get(key)
        if expected is None or expected[0] != service:
            raise ValueError(f"worker key not spawned for service {service!r}")
        known = self.workers.get(key)
        if known is not None:  # READY again (reconnected): keep what it holds
            known.routing_id, known.last_seen = routing_id, time.monotonic()
            return known
        capacity = min(max(1, capacity), MAX_CAPACITY)  # the worker's word: bounded
        record = WorkerRecord(key, routing_id, service, pid, capacity, time.monotonic(), expected[1])
        self.workers[key] = record
        return record

    def forget_worker(self, key: str) -> list[Pending]:
        """Drop a worker (dead or stopped); return the requests it held."""
        self.expected.pop(key, None)
        record = self.workers.pop(key, None)
        if record is None:
            return []
        lost = list(record.inflight.values())
        for pending in lost:
            self._finish(pending)
        return lost

    def pick(self, service: str, user: str | None = None) -> WorkerRecord | None:
        """Return the least-loaded worker of *service* (serving *user*, for per-user services) with room."""
        best: WorkerRecord | None = None
        for record in self.workers.values():
            if record.service != service or record.user != user or len(record.inflight) >= record.capacity:
                continue
            if best is None or len(record.inflight) < len(best.inflight):
                best = record
        return best

    def client_load(self, client_key: str) -> int:
        """Return how many requests *client_key* has in progress."""
        return self.per_client.get(client_key, 0)

    def admit(self, pending: Pending) -> None:
        """Count a new request against its client."""
        self.by_request[pending.request_id] = pending
        self.per_client[pending.client_key] = self.per_client.get(pending.client_key, 0) + 1

    def assign(self, pending: Pending, record: WorkerRecord) -> None:
        """Mark *pending* as held by *record*."""
        pending.worker_key = record.key
        record.inflight[pending.request_id] = pending
        record.last_active = time.monotonic()

    def enqueue(self, pending: Pending) -> None:
        """Park *pending* until a worker of its service (and user) has room."""
        self.queues.setdefault((pending.service, pending.route_user), deque()).append(pending)

    def complete(self, worker_key: str, request_id: bytes) -> Pending | None:
        """Take a finished request off a worker; None if that worker did not hold it."""
        record = self.workers.get(worker_key)
        if record is None:
            return None
        pending = record.inflight.pop(request_id, None)
        if pending is not None:
            self._finish(pending)
        return pending

    def in_flight(self, msg_type: str, user: str | None = None) -> int:
        """Requests of *msg_type* (of *user*, if given) admitted and not yet answered (queued or at a worker)."""
        return sum(
            1
            for pending in self.by_request.values()
            if pending.msg_type == msg_type and (user is None or pending.user == user)
        )

    def queued(self, service: str, user: str | None = None) -> int:
        """Return how many requests wait for *service* (of *user*)."""
        return len(self.queues.get((service, user), ()))

    def next_queued(self, service: str, user: str | None = None) -> Pending | None:
        """Pop the oldest request waiting for *service* (of *user*)."""
        queue = self.queues.get((service, user))
        return queue.popleft() if queue else None

    def take_queued_of(self, user: str) -> list[Pending]:
        """Remove and return every request waiting for one of *user*'s own workers."""
        taken: list[Pending] = []
        for (_, owner), queue in self.queues.items():
            if owner == user:
                taken.extend(queue)
                queue.clear()
        for pending in taken:
            self._finish(pending)
        return taken

    def idle_workers(self, older_than: float) -> list[WorkerRecord]:
        """Per-user workers with nothing in flight and no request since before *older_than*."""
        return [r for r in self.workers.values() if r.user and not r.inflight and r.last_active < older_than]

    def expired_queued(self, older_than: float) -> list[Pending]:
        """Remove and return queued requests that waited since before *older_than*."""
        expired = []
        for queue in self.queues.values():
            while queue and queue[0].queued_at < older_than:
                pending = queue.popleft()
                self._finish(pending)
                expired.append(pending)
        return expired

    def drain(self) -> list[Pending]:
        """Remove and return every request, queued or in flight (shutdown)."""
        everything = list(self.by_request.values())
        for queue in self.queues.values():
            queue.clear()
        for record in self.workers.values():
            record.inflight.clear()
        self.by_request.clear()
        self.per_client.clear()
        return everything

    def silent_workers(self, older_than: float) -> list[WorkerRecord]:
        """Return workers not heard from since before *older_than*."""
        return [r for r in self.workers.values() if r.last_seen < older_than]

    def _finish(self, pending: Pending) -> None:
        self.by_request.pop(pending.request_id, None)
        left = self.per_client.get(pending.client_key, 0) - 1
        if left > 0:
            self.per_client[pending.client_key] = left
        else:
            self.per_client.pop(pending.client_key, None)

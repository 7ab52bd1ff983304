"""The broker's side of the worker protocol: registration, heartbeats, forwarding.

A request is forwarded to the least-loaded worker of its service, or parked
for up to ``service_wait`` seconds when none has room. A worker that dies or
falls silent has its requests answered ``worker_lost``; parked requests that
time out are answered ``service_unavailable``. No request is ever left silent.

A per-user worker is its user's to control (DESIGN §1, rule 1), so what it
sends is metered (``ssd.broker.quota``: a worker that floods is stopped), sized
(``wire.MAX_*``), and checked: its events against a schema and its own ids
(``ssd.broker.worker_events``), its kernel records by the kernel service
(``ssd.broker.kernel_service``). Complaints about one worker are logged at most
every 10 s. Worker processes are the supervisor's: the router asks it to stop
one, and follows the exits it reports (``Supervisor.exits``).
"""

from __future__ import annotations

import asyncio
import logging
import pwd
import time
from collections.abc import Callable
from typing import Any, Literal

import msgspec
import zmq
import zmq.asyncio

from ssd import protocol
from ssd.broker.kernel_service import KernelService
from ssd.broker.kernels import RecordRefused
from ssd.broker.quota import CutStrikes, LogThrottle, Verdict, WorkerQuota
from ssd.broker.registry import Pending, Registry, WorkerRecord
from ssd.broker.supervisor import Supervisor
from ssd.broker.worker_events import WorkerEvents
from ssd.config import WorkersConfig
from ssd.errors import ErrorCode
from ssd.protocol import Content
from ssd.workers import wire

__all__ = ["WorkerRouter"]

log = logging.getLogger(__name__)

# Requests parked per service before new ones are refused at once.
MAX_QUEUED = 1000
# Routing id, tag, command and at most two arguments: a message with more frames is no worker message.
MAX_FRAMES = 5
# The largest body each command may carry (the socket's maxmsgsize, wire.MAX_FRAME, bounds every frame).
MAX_BODY = {wire.READY: wire.MAX_READY, wire.REPLY: wire.MAX_REPLY, wire.EVENT: wire.MAX_EVENT}
MAX_BODY[wire.KERNEL] = wire.MAX_RECORD

Answer = Callable[[Pending, Content], None]


class _ReplyStatus(msgspec.Struct):
    """The one field of a worker reply the broker checks before passing it on."""

    status: Literal["ok", "error"]


Publish = Callable[[str, str, dict[str, Any]], None]


class WorkerRouter:
    """Moves requests to workers and their replies back, over the backend ROUTER."""

    def __init__(
        self,
        socket: zmq.asyncio.Socket,
        registry: Registry,
        config: WorkersConfig,
        *,
        answer: Answer,
        publish: Publish,
        supervisor: Supervisor,
        kernels: KernelService,
    ) -> None:
        self.socket = socket
        self.registry = registry
        self.config = config
        self._answer = answer
        self._publish = publish
        self.supervisor = supervisor
        self.kernels = kernels
        self.events = WorkerEvents(kernels, self._refused)
        self._quotas: dict[str, WorkerQuota] = {}
        self._strikes = CutStrikes()
        self._complaints = LogThrottle()

    # -- requests from clients ---------------------------------------------------------

    def submit(self, pending: Pending) -> bool:
        """Forward *pending* to a worker now, or park it until one has room (True: parked)."""
        if self.registry.queued(pending.service, pending.route_user) >= MAX_QUEUED:
            self._answer(pending, _unavailable(pending, busy=True))
            return False
        self.registry.admit(pending)
        record = self.registry.pick(pending.service, pending.route_user)
        if record is None:
            self.registry.enqueue(pending)
            return True
        self._forward(pending, record)
        return False

    def _forward(self, pending: Pending, record: WorkerRecord) -> None:
        self.registry.assign(pending, record)
        content = msgspec.Raw(wire.encode(pending.content))  # what the broker validated, nothing else
        body = wire.Request(
            msg_type=pending.msg_type, content=content, client_key=pending.client_key, user=pending.user
        )
        self._send(record.routing_id, wire.REQUEST, pending.request_id, wire.encode(body))

    def _drain_queue(self, service: str, user: str | None) -> None:
        while (record := self.registry.pick(service, user)) is not None:
            pending = self.registry.next_queued(service, user)
            if pending is None:
                return
            self._forward(pending, record)

    def _send(self, routing_id: bytes, *frames: bytes) -> None:
        # ROUTER sends never block: a worker whose queue is full loses the
        # message, which its heartbeat expiry then turns into worker_lost.
        self.socket.send_multipart([routing_id, wire.TAG, *frames])

    # -- messages from workers ---------------------------------------------------------

    async def run(self) -> None:
        """Receive and handle worker messages until cancelled."""
        while True:
            frames = await self.socket.recv_multipart(copy=False)
            try:
                self._handle(frames)
            except Exception:  # one bad worker message must not stop the backend
                log.exception("error handling a worker message")
            # A waiting message is received without a pass through the event loop, and a kernel record costs an
            # fsync: without this a burst held the loop for seconds, no heartbeat went out and every worker left.
            await asyncio.sleep(0)

    def _handle(self, frames: list[zmq.Frame]) -> None:
        key = str(frames[0].get("User-Id"))
        record = self.registry.workers.get(key)
        now = time.monotonic()
        if record is not None and not self._within_quota(record, frames, now):
            return
        if not 3 <= len(frames) <= MAX_FRAMES or frames[1].bytes != wire.TAG:
            self._complain(key, now, "a malformed message (%d frames)", len(frames))
            return
        routing_id, command = frames[0].bytes, frames[2].bytes
        args = [frame.bytes for frame in frames[3:]]
        if args and len(args[-1]) > MAX_BODY.get(command, 0):
            self._complain(key, now, "a %r message of %d bytes", command[:16], len(args[-1]))
            return
        if record is not None:
            record.last_seen = now
            record.routing_id = routing_id  # follow a reconnect
        if command == wire.READY and len(args) == 1:
            self._on_ready(key, routing_id, args[0])
        elif record is None:
            self._complain(key, now, "a message while not registered")
        elif command == wire.REPLY and len(args) == 2:
            self._on_reply(record, args[0], args[1])
        elif command == wire.EVENT and len(args) == 2:
            self._on_event(record, args[0], args[1])
        elif command == wire.KERNEL and len(args) == 2:
            self._on_kernel(record, args[0], args[1])
        elif command != wire.HEARTBEAT or args:
            self._complain(key, now, "an unknown command %r", command[:16])

    def _within_quota(self, record: WorkerRecord, frames: list[zmq.Frame], now: float) -> bool:
        """Charge a registered worker's message to its rate; stop a worker that keeps flooding."""
        quota = self._quotas.setdefault(record.key, WorkerQuota())
        verdict = quota.judge(sum(len(frame) for frame in frames), now)
        if verdict is Verdict.ACCEPT:
            return True
        self._complain(record.key, now, "messages faster than its rate (dropped)")
        if verdict is Verdict.KILL:
            log.error(
                "%s worker pid %d of %s keeps flooding the broker: stopping it", record.service, record.pid, record.user
            )
            self.worker_exited(record.key)
            self.supervisor.kill(record.key)
        return False

    def connection_cut(self, uid: int | None) -> bool:
        """The flood guard cut a backend connection whose peer runs as *uid* (event loop only). Its worker's
        DEALER reconnects; a user cut again within CUT_WINDOW has every worker stopped (True: the caller then
        cuts that user's other connections): their keys end with them, so a process that stole one cannot
        connect again, and the supervisor starts fresh workers with new keys."""
        user = _account_name(uid)
        if user is None or not self._strikes.strike(user, time.monotonic()):
            return False
        keys = [key for key, (_, owner) in self.registry.expected.items() if owner == user]
        log.error("the workers of %s keep flooding the broker: stopping %d of them", user, len(keys))
        for key in keys:
            self.worker_exited(key)
            self.supervisor.kill(key)
        return True

    def _complain(self, key: str, now: float, what: str, *args: object) -> None:
        """Log what a worker did wrong, at most every 10 s per worker key."""
        suppressed = self._complaints.allow(key, now)
        if suppressed is None:
            return
        record = self.registry.workers.get(key)
        who = f"{record.service} worker pid {record.pid} of {record.user}" if record else f"worker key {key[:8]}"
        more = f" ({suppressed} more complaints suppressed)" if suppressed else ""
        log.warning("%s sent " + what + ": ignored%s", who, *args, more)

    def _refused(self, record: WorkerRecord, what: str) -> None:
        """An event the worker may not publish (WorkerEvents)."""
        self._complain(record.key, time.monotonic(), "%s", what)

    def _on_ready(self, key: str, routing_id: bytes, body: bytes) -> None:
        try:
            ready = wire.decode(body, wire.Ready)
            record = self.registry.register(key, routing_id, ready.service, ready.pid, ready.capacity)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            log.error("refused worker registration: %s", exc)
            self._send(routing_id, wire.STOP)
            return
        log.info("worker pid %d ready for service %s", record.pid, record.service)
        adoption = self.kernels.adoption(record)
        if adoption is not None:  # before any request (same connection, so in order): the kernels to take over
            self._send(routing_id, wire.ADOPT, adoption)
        self._drain_queue(record.service, record.user)

    def _on_reply(self, record: WorkerRecord, request_id: bytes, body: bytes) -> None:
        pending = self.registry.complete(record.key, request_id)
        if pending is None:
            log.debug("late or unknown reply from worker %d dropped", record.pid)
            return
        content: Content = body  # passed through: no decode and re-encode
        try:
            msgspec.json.decode(body, type=_ReplyStatus)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("worker %d sent an invalid reply: %s", record.pid, exc)
            content = protocol.error_content(ErrorCode.INTERNAL_ERROR, "the worker sent an invalid reply")
        else:
            self.events.note_reply(record, pending.msg_type, body)
            self.kernels.answered(pending, body)
        self._answer(pending, content)
        self._drain_queue(record.service, record.user)

    def _on_event(self, record: WorkerRecord, kind: bytes, body: bytes) -> None:
        """Publish a worker's event under its user's topic if it passes the checks (WorkerEvents)."""
        accepted = self.events.accept(record, kind, body)
        if accepted is None:
            return
        topic, msg_type, content = accepted
        self._publish(topic, msg_type, self.kernels.complete_event(record, msg_type, content))

    def _on_kernel(self, record: WorkerRecord, kernel_id: bytes, body: bytes) -> None:
        """A kernel worker's record of one kernel (empty body: forget it)."""
        try:
            self.kernels.record(record, kernel_id.decode(errors="replace"), body)
        except RecordRefused as exc:
            self._complain(record.key, time.monotonic(), "%s", exc)
        else:
            if body:  # stored: the worker may now do what must not outrun the record (sbatch)
                self._send(record.routing_id, wire.SAVED, kernel_id)
        self._stop_spares()

    def _stop_spares(self) -> None:
        """Ask kernel workers to stop the spares the host's limit or their users' ended sessions rule out."""
        for user, kernel_ids in self.kernels.spares_to_stop().items():
            worker = self.registry.pick("kernel", user)
            if worker is not None:
                self._send(worker.routing_id, wire.SPARES_STOP, *(k.encode() for k in kernel_ids))

    # -- liveness ----------------------------------------------------------------------

    async def follow_exits(self) -> None:
        """Answer what each worker process that ended held (the supervisor's exits), until cancelled."""
        while True:
            self.worker_exited(await self.supervisor.exits.get())

    def worker_exited(self, key: str) -> None:
        """A worker process ended, or is given up on: answer what it held."""
        self._quotas.pop(key, None)
        self.events.forget(key)
        for pending in self.registry.forget_worker(key):
            self._answer(pending, _lost(pending))

    async def watch(self) -> None:
        """Send heartbeats, declare silent workers dead, retire idle ones, expire parked requests."""
        while True:
            await asyncio.sleep(self.config.heartbeat_interval)
            now = time.monotonic()
            self._heartbeat(now)
            self._retire_idle(now)
            self.kernels.reap_orphans()
            self._stop_spares()
            self._expire_queued(now)

    def _heartbeat(self, now: float) -> None:
        """Beat every worker; stop one that missed heartbeat_liveness beats."""
        for record in list(self.registry.workers.values()):
            self._send(record.routing_id, wire.HEARTBEAT)
        liveness = self.config.heartbeat_liveness
        for record in self.registry.silent_workers(now - self.config.heartbeat_interval * liveness):
            log.warning("worker pid %d missed %d heartbeats", record.pid, liveness)
            self.worker_exited(record.key)
            self.supervisor.kill(record.key)

    def _retire_idle(self, now: float) -> None:
        """Stop per-user workers idle for idle_timeout, but a kernel worker that watches kernels."""
        timeout = self.config.idle_timeout
        for record in self.registry.idle_workers(now - timeout):
            if self.kernels.keeps_worker(record):
                continue
            log.info("%s worker of %s idle for %gs; stopping it", record.service, record.user, timeout)
            self.supervisor.retire(record.key)
            self.worker_exited(record.key)

    def _expire_queued(self, now: float) -> None:
        """Answer requests parked longer than service_wait."""
        for pending in self.registry.expired_queued(now - self.config.service_wait):
            busy = any(r.service == pending.service for r in self.registry.workers.values())
            self._answer(pending, _unavailable(pending, busy=busy))

    def stop_workers(self) -> None:
        """Ask every worker to finish and exit."""
        for record in self.registry.workers.values():
            self._send(record.routing_id, wire.STOP)


def _account_name(uid: int | None) -> str | None:
    if uid is None:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _lost(pending: Pending) -> dict[str, Any]:
    return protocol.error_content(
        ErrorCode.WORKER_LOST, f"the {pending.service} worker handling this request stopped; try again"
    )


def _unavailable(pending: Pending, *, busy: bool) -> dict[str, Any]:
    if busy:
        text = f"every {pending.service} worker on this server is busy; try again shortly"
    else:
        text = f"no {pending.service} worker is running on this server (see the server log)"
    return protocol.error_content(ErrorCode.SERVICE_UNAVAILABLE, text)

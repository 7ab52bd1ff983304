"""The broker's one interface to kernels: admission, records and adoption, sealing, the idle rule.

Kernels run under their users' kernel workers; the broker keeps their records
(``KernelBook``) and enforces what protects other users (DESIGN §1, rule 1).
The rest of the broker asks this class, and only this class, about kernels:

- admission: a ``kernel_start_request`` within the variable allow-list and the
  per-user and per-host limits: each kernel counted once, as its record or as
  its start still in flight. A start's worker sends the kernel's record before
  its reply (at spawn, or when it takes a spare), so from that record until the
  reply the start is counted as the record (``_starting``);
- records and adoption: a kernel worker's records go to the book, and the
  next kernel worker of that user gets them back (``ADOPT``);
- sealing: a ``kernel_state`` event of a ready kernel gets its connection info
  sealed to each client key bound to its user (``ssd.sealed``);
- the idle rule: a kernel worker that watches kernels is never idle;
- spares: spare kernels count toward the limits but never refuse a start. A
  start is admitted on the users' own kernels alone; while the host's records
  (spares included) exceed its limit, the newest spares are to go, and so are
  the spares of a user with no session left (``spares_to_stop``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgspec

from ssd import contract, protocol
from ssd.broker.kernels import KernelBook, RecordRefused
from ssd.broker.registry import Pending, Registry, WorkerRecord
from ssd.broker.sessions import SessionStore
from ssd.config import KernelsConfig
from ssd.errors import ErrorCode, SSDError
from ssd.kernels.connection import served_connection
from ssd.kernels.launch import check_env_vars
from ssd.kernels.record import KernelRecord
from ssd.keys import KeyPair
from ssd.messages import KernelStartRequest, RequestContent
from ssd.sealed import seal, sealed_context

__all__ = ["KERNEL_START", "ConnectionSealer", "KernelService"]

KERNEL_START = contract.KERNEL_START.msg_type
KERNEL_STATE = "kernel_state"
SEALED_STATES = ("ready", "restarted")


class _StartedKernel(msgspec.Struct):
    kernel_id: str


class _StartReply(msgspec.Struct):
    """What the broker reads of a kernel_start reply: which kernel it started."""

    kernel: _StartedKernel


class ConnectionSealer:
    """Seals a kernel's connection info to every client key bound to its user, as this server."""

    def __init__(self, sessions: SessionStore, server: KeyPair) -> None:
        self.sessions = sessions
        self.server = server

    def seal(self, user: str, kernel_id: str, info: dict[str, Any]) -> dict[str, Any] | None:
        """The sealed box for *user*'s live sessions, or None when the user has none."""
        keys = [key.encode() for key in self.sessions.keys_of(user)]
        if not keys:
            return None
        plain = json.dumps(info).encode()
        context = sealed_context(kernel_id)
        return seal(plain, keys, context, sender_public=self.server.public, sender_secret=self.server.secret)


class KernelService:
    """What the broker knows and decides about kernels, over the book of their records."""

    def __init__(
        self,
        book: KernelBook,
        registry: Registry,
        limits: KernelsConfig,
        *,
        sealer: ConnectionSealer,
        changed: Callable[[], None] | None,
    ) -> None:
        self.book = book
        self.registry = registry
        self.limits = limits
        self.sealer = sealer
        self._changed = changed  # told when the host's kernel count may have moved (the announcer)
        # Per user: kernels whose record (not a spare's) came while a start was in flight, until a start's
        # reply names them; each stands for one of those starts, which must not count a second time.
        self._recorded_starts: dict[str, set[str]] = {}

    # -- admission ---------------------------------------------------------------------

    def admit_start(self, user: str | None, content: RequestContent) -> dict[str, Any] | None:
        """Variables on the allow-list, then the user's and the host's kernel limits: an error reply, or None."""
        assert isinstance(content, KernelStartRequest)
        try:
            check_env_vars(dict(content.env_vars), self.limits.env_allow)
        except SSDError as exc:
            return protocol.error_content(exc.code, exc.message)
        if user is not None:
            refused = self._over_user_limit(user)
            if refused is not None:
                return refused
        return self._over_host_limit()

    def _over_user_limit(self, user: str) -> dict[str, Any] | None:
        limit, running = self.limits.max_per_user, self.book.count(user, spares=False)
        starting = self._starting(user)
        if not limit or running + starting < limit:
            return None
        also = f" and start {starting} more" if starting else ""
        return protocol.error_content(
            ErrorCode.LIMIT_REACHED,
            f"you already run {running} kernels here{also}, the most this host allows per user "
            "(stop one: ssd-ctl stop HOST KERNEL)",
        )

    def _over_host_limit(self) -> dict[str, Any] | None:
        limit = self.limits.max_per_host
        if not limit or self.book.count(spares=False) + self._starting() < limit:
            return None
        return protocol.error_content(
            ErrorCode.LIMIT_REACHED, f"this host runs {limit} kernels, the most it allows; try again later"
        )

    def _starting(self, user: str | None = None) -> int:
        """Starts in flight (of *user*, else on the host) whose kernel has no record yet."""
        recorded = 0
        for name in [user] if user is not None else list(self._recorded_starts):
            kernels, starts = self._recorded_starts.get(name, set()), self.registry.in_flight(KERNEL_START, name)
            if not starts:  # answered, or lost with their worker: what is left counts as records only
                self._recorded_starts.pop(name, None)
            recorded += min(len(kernels), starts)
        return self.registry.in_flight(KERNEL_START, user) - recorded

    def answered(self, pending: Pending, body: bytes) -> None:
        """A worker's reply to *pending* passes (the backend, before it answers the client): a kernel_start's
        kernel is counted as its record alone from now on."""
        if pending.msg_type != KERNEL_START or pending.user is None:
            return
        try:
            kernel_id = msgspec.json.decode(body, type=_StartReply).kernel.kernel_id
        except (msgspec.DecodeError, msgspec.ValidationError):
            return  # an error reply: its kernel's record (if it had one) was dropped before it
        self._recorded_starts.get(pending.user, set()).discard(kernel_id)

    # -- records and adoption ----------------------------------------------------------

    def record(self, worker: WorkerRecord, kernel_id: str, body: bytes) -> None:
        """A kernel worker's record of one kernel (empty *body*: forget it); RecordRefused if it may not."""
        if worker.service != "kernel" or worker.user is None:
            raise RecordRefused("a kernel record")
        book, user = self.book, worker.user
        was = book.record_of(user, kernel_id)
        changed = book.put(user, kernel_id, body) if body else book.drop(user, kernel_id)
        self._note_start_record(user, kernel_id, was)
        if changed and self._changed is not None:
            self._changed()

    def _note_start_record(self, user: str, kernel_id: str, was: KernelRecord | None) -> None:
        """A new kernel's record (or a spare's, now taken) while *user* has starts in flight is one of them."""
        now = self.book.record_of(user, kernel_id)
        if now is None:
            self._recorded_starts.get(user, set()).discard(kernel_id)
        elif not now.spare and (was is None or was.spare) and self.registry.in_flight(KERNEL_START, user):
            self._recorded_starts.setdefault(user, set()).add(kernel_id)

    def adoption(self, worker: WorkerRecord) -> bytes | None:
        """The records a newly registered kernel worker takes over (its ``ADOPT``); None for other workers."""
        if worker.service != "kernel" or not worker.user:
            return None
        return self.book.records_of(worker.user)

    def users(self) -> list[str]:
        """Users with recorded kernels, whose kernel workers start with the broker to watch them again."""
        return sorted(self.book.users())

    def owner(self, kernel_id: str) -> str | None:
        """Whose kernel *kernel_id* is (None: no such record)."""
        return self.book.owner(kernel_id)

    def count(self) -> int:
        """Kernels on this host (for the announcement)."""
        return self.book.count()

    def reap_orphans(self) -> None:
        """Collect ended kernels that became the broker's children (from the heartbeat loop)."""
        self.book.reap_orphans()

    # -- events and idleness -----------------------------------------------------------

    def complete_event(self, worker: WorkerRecord, msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
        """*content* of a checked worker event, with a ready kernel's connection info sealed for its user."""
        if worker.service != "kernel" or worker.user is None or msg_type != KERNEL_STATE:
            return content
        if content.get("state") not in SEALED_STATES:
            return content
        kernel_id = str(content.get("kernel_id", ""))
        record = self.book.record_of(worker.user, kernel_id)
        box = self.sealer.seal(worker.user, kernel_id, served_connection(record)) if record is not None else None
        return content if box is None else {**content, "sealed_connection": box}

    def keeps_worker(self, worker: WorkerRecord) -> bool:
        """Whether an idle *worker* must keep running: a kernel worker watching its user's kernels."""
        return worker.service == "kernel" and self.book.count(worker.user) > 0  # spares too, until spare_idle

    def spares_to_stop(self) -> dict[str, list[str]]:
        """Per user, the spares to stop now (an empty list: all of them): over the host's limit, newest
        first, and every spare of a user whose sessions all ended."""
        spares = self.book.spares()
        limit = self.limits.max_per_host
        over = self.book.count() + self._starting() - limit if limit else 0
        stop: dict[str, list[str]] = {}
        for user, kernel_id in spares[: max(over, 0)]:
            stop.setdefault(user, []).append(kernel_id)
        for user in {user for user, _ in spares}:
            if not self.sealer.sessions.keys_of(user):
                stop[user] = []
        return stop

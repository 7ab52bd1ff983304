"""The broker's one interface to kernels: admission, records and adoption, sealing, the idle rule.

Kernels run under their users' kernel workers; the broker keeps their records
(``KernelBook``) and enforces what protects other users (DESIGN §1, rule 1).
The rest of the broker asks this class, and only this class, about kernels:

- admission: a ``kernel_start_request`` within the variable allow-list and the
  per-user and per-host limits (records plus starts still in flight);
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

from ssd import contract, protocol
from ssd.broker.kernels import KernelBook, RecordRefused
from ssd.broker.registry import Registry, WorkerRecord
from ssd.broker.sessions import SessionStore
from ssd.config import KernelsConfig
from ssd.errors import ErrorCode, SSDError
from ssd.kernels.connection import served_connection
from ssd.kernels.launch import check_env_vars
from ssd.keys import KeyPair
from ssd.messages import KernelStartRequest, RequestContent
from ssd.sealed import seal, sealed_context

__all__ = ["KERNEL_START", "ConnectionSealer", "KernelService"]

KERNEL_START = contract.KERNEL_START.msg_type
KERNEL_STATE = "kernel_state"
SEALED_STATES = ("ready", "restarted")


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
        starting = self.registry.in_flight(KERNEL_START, user)
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
        if not limit or self.book.count(spares=False) + self.registry.in_flight(KERNEL_START) < limit:
            return None
        return protocol.error_content(
            ErrorCode.LIMIT_REACHED, f"this host runs {limit} kernels, the most it allows; try again later"
        )

    # -- records and adoption ----------------------------------------------------------

    def record(self, worker: WorkerRecord, kernel_id: str, body: bytes) -> None:
        """A kernel worker's record of one kernel (empty *body*: forget it); RecordRefused if it may not."""
        if worker.service != "kernel" or worker.user is None:
            raise RecordRefused("a kernel record")
        book = self.book
        changed = book.put(worker.user, kernel_id, body) if body else book.drop(worker.user, kernel_id)
        if changed and self._changed is not None:
            self._changed()

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
        over = self.book.count() - self.limits.max_per_host if self.limits.max_per_host else 0
        stop: dict[str, list[str]] = {}
        for user, kernel_id in spares[: max(over, 0)]:
            stop.setdefault(user, []).append(kernel_id)
        for user in {user for user, _ in spares}:
            if not self.sealer.sessions.keys_of(user):
                stop[user] = []
        return stop

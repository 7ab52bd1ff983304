"""What a per-user worker may publish: one schema per event kind, about its own user's things only.

A worker names the kind of an event and gives its body; the broker checks the
body against the kind's schema (unknown fields refused, so a worker cannot
slip in a ``sealed_connection``), checks that it speaks of the worker's own
records (a kernel id in the broker's book for that user, an operation id that
the worker announced in a reply), and builds the topic itself from the user
the worker was spawned for (``ssd.topics.user_topic``). Anything else is
dropped. The broker alone seals secrets into an event, after this check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

import msgspec

from ssd import contract, topics
from ssd.broker.registry import WorkerRecord
from ssd.messages import KernelId, KernelKind
from ssd.workers import wire

__all__ = ["EVENTS", "EnvProgressEvent", "KernelStateEvent", "WorkerEvents"]

Text = Annotated[str, msgspec.Meta(max_length=4096)]
OperationId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")]
# Operation ids a worker announced and the broker remembers (the oldest are forgotten first).
MAX_OPERATIONS = 256
OPERATION_REPLIES = frozenset(m.msg_type for m in (contract.ENV_CREATE, contract.ENV_INSTALL, contract.ENV_REMOVE))


class _Event(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Base of the event schemas: strict, and fields a worker left out stay out."""


class KernelStateEvent(_Event, frozen=True):
    """``kernel_state``: a kernel of the worker's user started, became ready, restarted, died or stopped."""

    kernel_id: KernelId
    name: Annotated[str, msgspec.Meta(max_length=256)]
    env: Text
    kind: KernelKind
    state: Literal["queued", "starting", "ready", "restarted", "dead", "culled", "shutdown"]
    exit_code: int | msgspec.UnsetType | None = msgspec.UNSET
    reason: Text | msgspec.UnsetType | None = msgspec.UNSET
    automatic: bool | msgspec.UnsetType = msgspec.UNSET
    # A kernel in a Slurm job: the job, Slurm's state and where it runs.
    job_id: int | msgspec.UnsetType = msgspec.UNSET
    slurm_state: Annotated[str, msgspec.Meta(max_length=64)] | msgspec.UnsetType = msgspec.UNSET
    node: Text | msgspec.UnsetType | None = msgspec.UNSET
    partition: Text | msgspec.UnsetType | None = msgspec.UNSET
    # The client's name for the start that made the kernel (kernel_start's start_token), when it gave one.
    start_token: Annotated[str, msgspec.Meta(max_length=64)] | msgspec.UnsetType = msgspec.UNSET


class EnvProgressEvent(_Event, frozen=True):
    """``env_progress``: one line of an environment operation the worker's user started."""

    operation: OperationId
    kind: Literal["create", "install", "remove"]
    target: Text
    phase: Annotated[str, msgspec.Meta(max_length=64)]
    line: Annotated[str, msgspec.Meta(max_length=wire.MAX_EVENT_LINE)] | None
    percent: Annotated[float, msgspec.Meta(ge=0, le=100)] | None
    state: Literal["running", "done", "failed", "cancelled"]


@dataclass(frozen=True)
class EventKind:
    """One kind of worker event: its schema, its topic family and the service that may send it."""

    schema: type[_Event]
    family: str
    service: str


EVENTS: dict[str, EventKind] = {
    "kernel_state": EventKind(KernelStateEvent, topics.KERNEL, "kernel"),
    "env_progress": EventKind(EnvProgressEvent, topics.ENV_PROGRESS, "env"),
}


class _OperationReply(msgspec.Struct):
    """The part of an env operation's reply that announces its id."""

    status: str
    operation: OperationId | None = None


Refused = Callable[[WorkerRecord, str], None]


class KernelOwners(Protocol):
    """Who owns a kernel, by the broker's records (KernelService, KernelBook)."""

    def owner(self, kernel_id: str) -> str | None:
        """The user whose kernel *kernel_id* is (None: no such record)."""


class WorkerEvents:
    """Turns what a worker sends into an event to publish (topic, type, content), or refuses it."""

    def __init__(self, kernels: KernelOwners, refused: Refused) -> None:
        self.kernels = kernels
        self._refused = refused
        self._operations: dict[str, dict[str, None]] = {}  # worker key -> announced operation ids, in order

    def accept(self, worker: WorkerRecord, kind: bytes, body: bytes) -> tuple[str, str, dict[str, Any]] | None:
        """The event to publish for *worker*'s message, or None (refusal reported) when it may not say it."""
        name = kind.decode(errors="replace")
        spec = EVENTS.get(name)
        if spec is None or spec.service != worker.service or worker.user is None:
            self._refused(worker, f"an event of unknown kind {name[:64]!r} for its service")
            return None
        if len(body) > wire.MAX_EVENT:
            self._refused(worker, f"a {name} event of {len(body)} bytes")
            return None
        try:
            event = msgspec.json.decode(body, type=spec.schema)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._refused(worker, f"an invalid {name} event ({exc})")
            return None
        if not self._owns(worker, event):
            self._refused(worker, f"a {name} event about something that is not its user's")
            return None
        return topics.user_topic(spec.family, worker.user), name, msgspec.to_builtins(event)

    def _owns(self, worker: WorkerRecord, event: _Event) -> bool:
        assert worker.user is not None
        if isinstance(event, KernelStateEvent):
            return self.kernels.owner(event.kernel_id) == worker.user
        if isinstance(event, EnvProgressEvent):
            announced = self._operations.get(worker.key, {})
            if event.operation not in announced:
                return False
            if event.state != "running":  # its last event
                del announced[event.operation]
            return True
        return False

    def note_reply(self, worker: WorkerRecord, msg_type: str, body: bytes) -> None:
        """Remember an operation id an env worker announced in a reply (its progress events may follow)."""
        if worker.service != "env" or msg_type not in OPERATION_REPLIES:
            return
        try:
            reply = msgspec.json.decode(body, type=_OperationReply)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        if reply.status != "ok" or reply.operation is None:
            return
        announced = self._operations.setdefault(worker.key, {})
        announced[reply.operation] = None
        while len(announced) > MAX_OPERATIONS:
            del announced[next(iter(announced))]

    def forget(self, key: str) -> None:
        """A worker is gone: drop what it announced."""
        self._operations.pop(key, None)

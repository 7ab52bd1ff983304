"""Re-checking logged-in accounts: a session lives only while its account may still log in.

A login checks the account once; an account locked or expired afterwards
(``usermod -L``, ``chage -E 0``, a changed allow/deny group) must not keep its
sessions for half a day. So the broker asks the (privileged) auth pool with an
``account_check_request`` before it starts a user's own worker, and at least
every ``auth.account_recheck`` seconds for each user with a live session. A
refused account has all its sessions ended (logged), and each of those keys is
told why at its next request. A check that gets no verdict (the auth pool busy
or gone) ends nothing and starts nothing: it is tried again shortly.

``AccountSchedule`` is the policy (pure, injected clock); ``AccountChecks``
sends the checks and acts on the answers.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from ssd import contract, protocol
from ssd.broker.registry import Pending, Registry
from ssd.broker.sessions import SessionStore
from ssd.errors import ErrorCode
from ssd.messages import AccountCheckRequest
from ssd.protocol import Content

__all__ = ["LONGEST_SLEEP", "AccountChecks", "AccountSchedule"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Answer = Callable[[Pending, dict[str, Any]], None]

RETRY = 30.0  # seconds before a check without a verdict is tried again
LONGEST_SLEEP = 60.0


class AccountSchedule:
    """When each logged-in user's account is due for a check (wall clock, like session times)."""

    def __init__(self, interval: float, *, retry: float = RETRY, clock: Clock = time.time) -> None:
        self.interval = interval
        self.retry = min(retry, interval)
        self.clock = clock
        self._checked: dict[str, float] = {}  # user -> last check that passed
        self._not_before: dict[str, float] = {}  # user -> earliest retry after a check without a verdict
        self.in_flight: set[str] = set()

    def due(self, logins: Mapping[str, float]) -> list[str]:
        """Users (with their newest login time) whose last check or login is *interval* old, none in flight."""
        now = self.clock()
        return sorted(
            user for user, login in logins.items() if user not in self.in_flight and self._next(user, login) <= now
        )

    def wait(self, logins: Mapping[str, float]) -> float:
        """Seconds until the next check is due (a login made later is due no sooner than *interval* from now)."""
        now = self.clock()
        nexts = [self._next(user, login) for user, login in logins.items() if user not in self.in_flight]
        return max(0.0, min([*nexts, now + min(self.interval, LONGEST_SLEEP)]) - now)

    def begin(self, user: str) -> bool:
        """Mark a check of *user* as sent; False if one is already in flight."""
        if user in self.in_flight:
            return False
        self.in_flight.add(user)
        return True

    def passed(self, user: str) -> None:
        """The account may still log in: next due *interval* from now."""
        self.in_flight.discard(user)
        self._checked[user] = self.clock()
        self._not_before.pop(user, None)

    def refused(self, user: str) -> None:
        """The account is disabled (its sessions end): forget it."""
        self.in_flight.discard(user)
        self._checked.pop(user, None)
        self._not_before.pop(user, None)

    def undecided(self, user: str) -> None:
        """No verdict (the auth pool busy or gone): try again after *retry*."""
        self.in_flight.discard(user)
        self._not_before[user] = self.clock() + self.retry

    def prune(self, logins: Mapping[str, float]) -> None:
        """Forget users without a live session."""
        for table in (self._checked, self._not_before):
            for user in [u for u in table if u not in logins]:
                del table[user]

    def _next(self, user: str, login: float) -> float:
        last = max(self._checked.get(user, login), login)
        return max(last + self.interval, self._not_before.get(user, last))


class AccountChecks:
    """Sends account checks to the auth pool and ends the sessions of refused accounts."""

    def __init__(
        self,
        schedule: AccountSchedule,
        *,
        sessions: SessionStore,
        registry: Registry,
        submit: Callable[[Pending], object],
        answer: Answer,
    ) -> None:
        self.schedule = schedule
        self.sessions = sessions
        self.registry = registry
        self._submit = submit
        self._answer = answer
        self._ids = itertools.count(1)
        self._then: dict[str, list[Callable[[], None]]] = {}  # user -> what to do once the account passed

    def require(self, user: str, then: Callable[[], None]) -> None:
        """Check *user*'s account now and call *then* if it may still log in (a worker start waits on it)."""
        self._then.setdefault(user, []).append(then)
        self._check(user)

    async def run(self) -> None:
        """Check every logged-in account when it is due, until cancelled."""
        while True:
            logins = self.sessions.logins()
            self.schedule.prune(logins)
            for user in self.schedule.due(logins):
                self._check(user)
            await asyncio.sleep(max(self.schedule.wait(logins), 0.05))

    def _check(self, user: str) -> None:
        if not self.schedule.begin(user):
            return  # one in flight already: its verdict serves this caller too
        pending = Pending(
            request_id=b"account-%d" % next(self._ids),
            service="auth",  # contract.ACCOUNT_CHECK's
            idents=[],
            parent={},
            client_key="",  # the broker: the auth worker serves this type to nobody else
            msg_type=contract.ACCOUNT_CHECK.msg_type,
            content=AccountCheckRequest(),
            queued_at=time.monotonic(),
            user=user,
            on_answer=lambda content: self._verdict(user, content),
        )
        self._submit(pending)

    def _verdict(self, user: str, content: Content) -> None:
        reply: dict[str, Any] = msgspec.json.decode(
            content if isinstance(content, bytes) else msgspec.json.encode(content)
        )
        waiting = self._then.pop(user, [])
        if reply.get("status") == "ok":
            self.schedule.passed(user)
            for then in waiting:
                then()
        elif reply.get("ename") == ErrorCode.ACCOUNT_DISABLED:
            self.schedule.refused(user)
            self._disable(user, str(reply.get("evalue", "the account may no longer log in")))
        else:
            self.schedule.undecided(user)
            log.warning("could not check the account of %s (%s): nothing started for it", user, reply.get("evalue"))

    def _disable(self, user: str, reason: str) -> None:
        ended = self.sessions.end_user(user, reason)
        log.warning("account check of %s failed: %s; ended its %d session(s)", user, reason, ended)
        error = protocol.error_content(ErrorCode.NOT_AUTHORIZED, f"your session was ended: {reason}")
        for pending in self.registry.take_queued_of(user):
            self._answer(pending, error)

"""Topics of the events socket, built in one place for the broker and every subscriber.

A SUB socket filters by prefix, so a user's topic ends with a terminator that
no user name contains (``/``; see ``ssd.users.normalize_username``): the topic
of ``alice`` is then a prefix of no other user's (``alice2``, ``alice.bob``).
Only the broker builds a user's topic, from the user a worker was spawned for;
a worker names the kind of event only (``ssd.broker.worker_events``).
"""

from __future__ import annotations

from typing import Final

__all__ = ["ENV_PROGRESS", "HELLO", "KERNEL", "SUBSCRIBED", "TERMINATOR", "hello_topic", "user_topic"]

KERNEL: Final = "kernel"
ENV_PROGRESS: Final = "env_progress"
TERMINATOR: Final = "/"
# A subscriber's own topic (HELLO + a random name): the edge answers its subscription with one SUBSCRIBED
# event on it, and since a connection's subscriptions arrive in order, those sent before it are in effect.
HELLO: Final = "hello/"
SUBSCRIBED: Final = "subscribed"


def user_topic(family: str, user: str) -> str:
    """The topic of *user*'s events of *family* (``kernel.alice/``); subscribe to exactly this."""
    if not user or TERMINATOR in user:
        raise ValueError(f"no topic for the user name {user!r}")
    return f"{family}.{user}{TERMINATOR}"


def hello_topic(name: str) -> str:
    """The topic whose SUBSCRIBED event tells a subscriber that its earlier subscriptions are in effect."""
    return f"{HELLO}{name}"

"""The broker's route table: the registry's types a client may send (``ssd.contract``).

There is no dispatch by attribute name: a message type that is not a key of
``ROUTES`` (an unknown one, or one only the broker sends to a worker) is
answered ``unknown_message_type``. A test walks this table.
"""

from __future__ import annotations

from typing import Any

from ssd.contract import Auth, MessageType, client_types

__all__ = ["PUBLIC_TYPES", "ROUTES", "Auth", "Route"]

Route = MessageType[Any, Any]

ROUTES: dict[str, Route] = client_types()

# The only request types a key that is not bound to a user may send.
PUBLIC_TYPES = frozenset(name for name, route in ROUTES.items() if route.auth is Auth.PUBLIC)

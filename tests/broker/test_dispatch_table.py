"""Walk the whole dispatch table: every request type but three needs a bound key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from support.ci import require_root
from support.daemon import Daemon, new_client
from users import error_of, login, system_daemon, users

from ssd.broker.dispatch import PUBLIC_TYPES, ROUTES, Auth
from ssd.client import Client
from ssd.errors import ErrorCode, RemoteError
from ssd.messages import LoginRequest

PUBLIC = {"ping_request", "server_info_request", "login_request"}
# Content for the types whose fields have no defaults; every other type is sent with {}.
# Samples are chosen to have no side effect once authorized (no tool is run, nothing is created).
SAMPLES: dict[str, dict[str, Any]] = {
    "login_request": {"username": "nobody_here"},
    "env_info_request": {"env": "/nonexistent-ssd-env"},
    "env_create_request": {"name": "never", "tool": "micromamba"},
    "env_install_request": {"env": "/nonexistent-ssd-env", "packages": ["six"]},
    "env_remove_request": {"env": "/nonexistent-ssd-env"},
    "env_cancel_request": {"operation": "none"},
    "kernel_start_request": {"env": "/nonexistent-ssd-env"},
    "kernel_info_request": {"kernel": "00000000-0000-0000-0000-000000000000"},
    "kernel_interrupt_request": {"kernel": "00000000-0000-0000-0000-000000000000"},
    "kernel_restart_request": {"kernel": "00000000-0000-0000-0000-000000000000"},
    "kernel_shutdown_request": {"kernel": "00000000-0000-0000-0000-000000000000"},
    "kernel_lease_request": {"kernel": "00000000-0000-0000-0000-000000000000"},
    "spares_request": {"env": "/nonexistent-ssd-env", "count": 1},
}
# What a bound key may get besides ok: answers that show the request got past authorization.
PAST_AUTHORIZATION = {"ok", "env_not_found", "bad_request", "not_found", "kernel_not_found"}
# Ends the session: walked last.
LAST = "logout_request"


def minimal_content(msg_type: str) -> dict[str, Any]:
    """Valid content for *msg_type*: its sample, else {} (checked against the route's struct)."""
    content = SAMPLES.get(msg_type, {})
    msgspec.convert(content, ROUTES[msg_type].request)  # a sample that does not parse would test nothing
    return content


def outcome(client: Client, msg_type: str) -> str:
    """ "ok", or the ename of the error reply to *msg_type* with minimal content."""
    try:
        return str(client.request(msg_type, minimal_content(msg_type))["status"])
    except RemoteError as exc:
        return exc.code


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A system-mode daemon with the diagnostic worker, so that every service exists."""
    require_root()
    with system_daemon(tmp_path, {"SSD_WORKERS_DIAG": "true"}) as made:
        yield made


def test_public_types_are_exactly_three() -> None:
    """Only ping, server_info and login are public, in PUBLIC_TYPES and in the routes themselves."""
    assert set(PUBLIC_TYPES) == PUBLIC
    assert {t for t, route in ROUTES.items() if route.auth is Auth.PUBLIC} == PUBLIC
    assert all(route.auth in (Auth.PUBLIC, Auth.USER) for route in ROUTES.values())
    assert ROUTES["login_request"].request is LoginRequest


def test_every_type_has_valid_minimal_content() -> None:
    """Each route's struct accepts the content the walk sends, so refusals are about authorization."""
    for msg_type in ROUTES:
        minimal_content(msg_type)


def test_unbound_key_is_refused_everything_but_public(daemon: Daemon, tmp_path: Path) -> None:
    """A fresh key gets not_authorized for every non-public type and an answer for the public ones."""
    with new_client(daemon, tmp_path / "c") as client:
        for msg_type in sorted(set(ROUTES) - PUBLIC):
            refused = error_of(client.request, msg_type, minimal_content(msg_type))
            assert refused.code == ErrorCode.NOT_AUTHORIZED, (msg_type, refused.details)
            # Bad content must not change the answer: authorization comes before parsing.
            junk = error_of(client.request, msg_type, {"no_such_field": 1})
            assert junk.code == "not_authorized", (msg_type, junk.details)
        assert client.ping().status == "ok"
        assert client.server_info().status == "ok"
        bad_name = error_of(client.login, "../x", "irrelevant")
        assert bad_name.code == ErrorCode.BAD_REQUEST


def test_bound_key_passes_authorization_for_every_type(daemon: Daemon, tmp_path: Path) -> None:
    """After a login the same walk gets past authorization (so the refusals above were real)."""
    with users(1) as (user,), new_client(daemon, tmp_path / "c") as client:
        login(client, user.name, user.password)
        for msg_type in sorted(set(ROUTES) - PUBLIC - {LAST}):
            assert outcome(client, msg_type) in PAST_AUTHORIZATION, msg_type
        assert client.request(LAST, minimal_content(LAST))["ended"] is True

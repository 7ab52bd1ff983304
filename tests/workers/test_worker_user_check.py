"""A per-user worker acts only for its own user, whatever the broker sends it."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import zmq

from ssd.errors import ErrorCode
from ssd.workers import wire
from ssd.workers.env import EnvWorker


def _worker(user: str | None) -> EnvWorker:
    public, secret = zmq.curve_keypair()
    server, _ = zmq.curve_keypair()
    options = {"envs": {"known_roots": False, "venv_dirs": []}} | ({"user": user} if user else {})
    credentials = wire.Credentials(
        endpoint="tcp://127.0.0.1:1",
        server_key=server.decode(),
        public_key=public.decode(),
        secret_key=secret.decode(),
        service="env",
        heartbeat_interval=1.0,
        log_level="error",
        options=options,
    )
    return EnvWorker(credentials)


def _ask(worker: EnvWorker, user: str | None) -> dict[str, Any]:
    content = msgspec.Raw(b"{}")
    body = wire.encode(wire.Request(msg_type="env_list_request", content=content, client_key="k" * 40, user=user))
    answer = asyncio.run(worker._answer(body))
    return msgspec.to_builtins(answer)  # type: ignore[no-any-return]


def test_worker_refuses_requests_for_another_user() -> None:
    """The env worker of alice answers alice and refuses bob (and an unbound request) with not_authorized."""
    worker = _worker("alice")
    try:
        assert _ask(worker, "alice")["status"] == "ok"
        for other in ("bob", None):
            reply = _ask(worker, other)
            assert reply["status"] == "error"
            assert reply["ename"] == ErrorCode.NOT_AUTHORIZED
    finally:
        worker.ctx.destroy(linger=0)

"""The registry of message types is complete, and everything that serves or sends a type derives from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from ssd import contract
from ssd.broker.dispatch import ROUTES
from ssd.broker.handlers import HANDLERS
from ssd.client import AsyncClient, Client
from ssd.client.connection import typed_reply
from ssd.contract_doc import markdown
from ssd.errors import SSDError
from ssd.messages import RequestContent
from ssd.replies import Reply
from ssd.workers.auth import AuthWorker
from ssd.workers.base import Worker, check_handlers
from ssd.workers.diag import DiagWorker
from ssd.workers.env import EnvWorker
from ssd.workers.kernel import KernelWorker

WORKERS: list[type[Worker]] = [AuthWorker, DiagWorker, EnvWorker, KernelWorker]


@pytest.mark.parametrize("msg_type", sorted(contract.MESSAGES))
def test_every_type_has_request_reply_server_auth_and_client(msg_type: str) -> None:
    """Each type names its request struct, reply struct, server and auth; a client type has its method twice."""
    t = contract.MESSAGES[msg_type]
    assert issubclass(t.request, RequestContent)
    assert t.request is not RequestContent
    assert issubclass(t.reply, Reply)
    assert t.reply is not Reply
    assert t.server == contract.BROKER or any(w.service == t.server for w in WORKERS)
    assert isinstance(t.auth, contract.Auth)
    assert t.msg_type in (t.request.__doc__ or ""), "the request struct's docstring names its type"
    if t.auth is contract.Auth.INTERNAL:
        assert t.client is None
        assert t.msg_type not in ROUTES
        return
    assert t.client is not None
    assert t.msg_type in ROUTES
    assert callable(getattr(AsyncClient, t.client, None)), f"AsyncClient has no {t.client}"
    assert callable(getattr(Client, t.client, None)), f"Client has no {t.client}"


def test_a_type_without_a_client_method_is_refused() -> None:
    """The registry itself refuses a client type without a method, and a per-user type the broker serves."""
    with pytest.raises(ValueError, match="client method"):
        contract.MessageType("x_request", RequestContent, Reply, contract.Auth.USER)
    with pytest.raises(ValueError, match="per user"):
        contract.MessageType("x_request", RequestContent, Reply, contract.Auth.USER, per_user=True, client="x")


@pytest.mark.parametrize("worker", WORKERS, ids=lambda w: w.service)
def test_every_worker_serves_exactly_its_registry_types(worker: type[Worker]) -> None:
    """A worker's handlers are the registry's types for its service, no more, no fewer."""
    assert set(worker.handlers) == contract.served_by(worker.service)
    check_handlers(worker.service, worker.handlers)


def test_a_worker_with_other_handlers_does_not_start() -> None:
    """check_handlers (run in Worker.__init__) names what is missing and what is extra."""
    handlers = dict(EnvWorker.handlers)
    del handlers["env_list_request"]
    handlers["kernel_start_request"] = KernelWorker.handlers["kernel_start_request"]
    with pytest.raises(RuntimeError, match=r"missing \['env_list_request'\], extra \['kernel_start_request'\]"):
        check_handlers("env", handlers)


def test_the_broker_handles_exactly_its_registry_types() -> None:
    """The broker's own handlers are the registry's broker types."""
    assert set(HANDLERS) == contract.served_by(contract.BROKER)


def test_a_malformed_reply_is_bad_reply_naming_the_field() -> None:
    """A reply field of the wrong type is SSDError(bad_reply) naming it; unknown fields are tolerated."""
    good: dict[str, Any] = {"status": "ok", "data": "x", "server_time": 1.0, "from_a_newer_server": [1]}
    assert typed_reply(contract.PING, good).data == "x"
    with pytest.raises(SSDError) as refused:
        typed_reply(contract.PING, {**good, "server_time": "noon"})
    assert refused.value.code == "bad_reply"
    assert "server_time" in refused.value.message
    kernel = {"kernel_id": "k", "name": "n", "env": "/e", "kind": "spyder", "state": "ready", "pid": "one"}
    with pytest.raises(SSDError) as nested:
        typed_reply(contract.KERNEL_LIST, {"status": "ok", "kernels": [kernel]})
    assert nested.value.code == "bad_reply"
    assert "kernels[0].pid" in nested.value.message


def test_requests_omit_defaults_on_the_wire() -> None:
    """A client sends only the fields it set, so an older server (which refuses unknown fields) still takes it."""
    content = contract.KERNEL_START.request(env="sci")
    assert msgspec.to_builtins(content) == {"env": "sci"}


def test_protocol_page_is_generated_from_the_registry() -> None:
    """docs/protocol.md equals `python -m ssd.contract_doc` (regenerate it with --write)."""
    page = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"  # the repository's, however ssd is installed
    assert page.read_text() == markdown(), "docs/protocol.md is stale: run python -m ssd.contract_doc --write"


def test_protocol_page_lists_every_message_and_error() -> None:
    """Every registered type has its section; every error code its row."""
    page = markdown()
    for msg_type in contract.MESSAGES:
        assert f"### {msg_type}\n" in page
    for code in ("bad_request", "not_authorized", "auth_failed"):
        assert f"| `{code}` |" in page

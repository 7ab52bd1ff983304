"""The ssd-ctl tests' shared host: one user-mode daemon per test module (see support.ctlhost)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.ctlhost import Host, serving, stop_left_kernels


@pytest.fixture(scope="module")
def module_host(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    """A daemon that finds the env ``sci``, and a client logged in to it by its authorized key."""
    with serving(tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])) as host:
        yield host


@pytest.fixture
def host(module_host: Host) -> Iterator[Host]:
    """The module's host; kernels a failed test left behind are stopped after it (tests stop their own)."""
    yield module_host
    stop_left_kernels(module_host)

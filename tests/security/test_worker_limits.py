"""Issue 13, finding 5: limits that protect other users hold whatever the user's own worker does.

Bob controls his workers (here: he stops them, so they answer nothing at all). The broker still refuses
what the host's rules forbid (a variable off kernels.env_allow, administration for a denied group), at
once and without the worker; and kernels.memory_limit is a hard limit that root set on bob's kernel
worker before it dropped privileges, so no kernel it starts can raise it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from envfixtures import public_dir
from kerneltools import give_env
from support.ci import require_root
from support.daemon import new_client
from users import User, error_of, login, system_daemon, users

from ssd.client import Client
from ssd.errors import ErrorCode

MIB = 1 << 20


def _worker(user: User, service: str) -> int:
    """The pid of *user*'s worker of *service* (identified by the socket it has open: the newest one)."""
    found = subprocess.run(["pgrep", "-n", "-u", user.name, "-f", "ssd.workers"], capture_output=True, text=True)
    assert found.stdout.strip(), f"no {service} worker of {user.name}"
    return int(found.stdout.split()[0])


def _hard_address_space(pid: int) -> int | None:
    """The hard RLIMIT_AS of *pid* in bytes (None: unlimited)."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max address space"):
            hard = re.split(r"\s{2,}", line.strip())[2]
            return None if hard == "unlimited" else int(hard)
    raise AssertionError("no address space line")


@contextmanager
def _stopped(*pids: int) -> Iterator[None]:
    """Workers that answer nothing (their user stopped them), continued afterwards."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # the broker may have given up on it
                os.kill(pid, signal.SIGCONT)


@pytest.mark.root
@pytest.mark.timeout(120)
def test_limits_hold_without_the_users_worker(tmp_path: Path) -> None:
    """env_allow and admin_deny_groups refused by the broker while bob's workers are stopped; bob's kernel
    worker has memory_limit as its hard RLIMIT_AS, set by root."""
    require_root()
    with users(1) as (bob,), public_dir() as where:
        give_env(bob, where)
        settings = {"SSD_ENVS_ADMIN_DENY_GROUPS": bob.name, "SSD_KERNELS_MEMORY_LIMIT": "1024"}
        with system_daemon(tmp_path, settings) as daemon:
            client: Client = new_client(daemon, tmp_path / "bob", timeout=20)
            client.connect()
            login(client, bob.name, bob.password)
            try:
                client.kernel_list()
                kernel_worker = _worker(bob, "kernel")
                client.request("env_list_request")
                env_worker = _worker(bob, "env")
                assert kernel_worker != env_worker
                assert _hard_address_space(kernel_worker) == 1024 * MIB
                assert _hard_address_space(env_worker) is None  # env tools are not kernels
                with _stopped(kernel_worker, env_worker):
                    refused = error_of(client.request, "env_create_request", {"name": "x", "packages": []})
                    assert refused.code == ErrorCode.NOT_ALLOWED, refused
                    variables = {"env": "sci", "kind": "ipykernel", "env_vars": {"LD_PRELOAD": "/tmp/x.so"}}
                    refused = error_of(client.request, "kernel_start_request", variables)
                    assert refused.code == ErrorCode.ENV_VAR_REFUSED, refused
                    assert "LD_PRELOAD" in str(refused)
            finally:
                client.close()

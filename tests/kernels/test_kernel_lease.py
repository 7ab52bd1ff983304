"""Kernel leases: a kernel started with a lease is shut down once its frontend stops renewing it and no
client is connected, after kernels.lease_grace; kernels without a lease, detached ones and ones with a
client stay. Also: a restart whose environment is gone. A user-mode daemon, real kernels, real clients.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from envfixtures import conda_copy, kernel_venv
from kerneltools import EventTap, kernel_client, process_state
from support.daemon import Daemon, logged_in_client, start_daemon
from support.eventually import eventually

from ssd.client import Client
from ssd.errors import RemoteError
from ssd.replies import KernelDescription

GRACE = 1.0  # kernels.lease_grace of these daemons
LEASE = 1.0  # the shortest lease a client may ask for


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Daemon, Client, EventTap]]:
    """A daemon with a short lease grace and the environment ``sci``; a client logged in by key; its events."""
    conda_copy(kernel_venv(), tmp_path / "envs" / "sci")
    daemon = start_daemon(tmp_path, extra_env=_daemon_env(tmp_path))
    client = logged_in_client(daemon, tmp_path / "client", timeout=60)
    tap = EventTap(client, "kernel.")
    try:
        yield daemon, client, tap
    finally:
        tap.close()
        for kernel in client.kernel_list():
            client.kernel_shutdown(kernel.kernel_id)
        client.close()
        daemon.stop_and_check()


def _daemon_env(tmp: Path) -> dict[str, str]:
    return {
        "SSD_ENVS_ENVS_DIRS": str(tmp / "envs"),
        "SSD_ENVS_KNOWN_ROOTS": "false",
        "SSD_KERNELS_LEASE_GRACE": str(GRACE),
    }


def _listed(client: Client) -> dict[str, KernelDescription]:
    return {k.kernel_id: k for k in client.kernel_list()}


def _culled(tap: EventTap, kernel_id: str, timeout: float = 30.0) -> dict[str, Any]:
    return tap.kernel_state(kernel_id, "culled", timeout)


def _lapsed_beyond_grace(client: Client, kernel_id: str) -> bool:
    """The host itself says this kernel's lease lapsed more than the grace and a check period ago."""
    left = _listed(client)[kernel_id].lease_left
    return bool(left is not None and left < -(GRACE + 1.0))


def test_a_lapsed_lease_ends_the_kernel_and_only_that(site: tuple[Daemon, Client, EventTap]) -> None:
    """Not renewed: culled (lease_expired) and its process gone. No lease, detached, or a client connected
    past the same point: still there; the client leaves: culled too."""
    _, client, tap = site
    lapsing = client.kernel_start("sci", "ipykernel", lease=LEASE).kernel
    unleased = client.kernel_start("sci", "ipykernel").kernel
    detached = client.kernel_start("sci", "ipykernel", lease=LEASE).kernel
    client.kernel_lease(detached.kernel_id, "detach")
    connected = client.kernel_start("sci", "ipykernel", lease=LEASE)
    with kernel_client(client.connection_info(connected.connection)):
        event = _culled(tap, lapsing.kernel_id)
        assert event["reason"] == "lease_expired"
        eventually(lambda: process_state(lapsing.pid) is None, "the culled kernel's process gone")
        eventually(lambda: _lapsed_beyond_grace(client, connected.kernel.kernel_id), "lease lapsed by far")
        listed = _listed(client)
        assert lapsing.kernel_id not in listed
        for kept in (unleased, detached, connected.kernel):
            assert listed[kept.kernel_id].state == "ready"
        assert listed[unleased.kernel_id].lease is None
        assert listed[detached.kernel_id].lease is None
        assert listed[connected.kernel.kernel_id].connections >= 1
    assert _culled(tap, connected.kernel.kernel_id)["reason"] == "lease_expired"
    assert set(_listed(client)) == {unleased.kernel_id, detached.kernel_id}


def test_renewals_keep_a_kernel(site: tuple[Daemon, Client, EventTap]) -> None:
    """A kernel whose lease is renewed outlives one started just before it whose lease is not."""
    _, client, _ = site
    dropped = client.kernel_start("sci", "ipykernel", lease=LEASE).kernel
    kept = client.kernel_start("sci", "ipykernel", lease=LEASE).kernel

    def renewed_until_the_other_is_culled() -> bool:
        client.kernel_lease(kept.kernel_id)
        return dropped.kernel_id not in _listed(client)

    eventually(renewed_until_the_other_is_culled, "the unrenewed kernel culled", timeout=30, interval=0.2)
    assert _listed(client)[kept.kernel_id].state == "ready"
    client.kernel_lease(kept.kernel_id, "detach")
    with pytest.raises(RemoteError) as refused:
        client.kernel_lease(kept.kernel_id)  # detached: a renewal must say how long
    assert refused.value.code == "bad_request"
    client.kernel_lease(kept.kernel_id, lease=30)
    assert _listed(client)[kept.kernel_id].lease == 30


def test_the_lease_survives_a_daemon_restart_with_a_fresh_grace(tmp_path: Path) -> None:
    """kill -9 of the daemon for longer than lease and grace: the next daemon re-adopts the kernel with its
    lease, from a fresh start (its frontend may renew), and culls it when nobody does."""
    conda_copy(kernel_venv(), tmp_path / "envs" / "sci")
    daemon = start_daemon(tmp_path, extra_env=_daemon_env(tmp_path))
    client = logged_in_client(daemon, tmp_path / "client", timeout=60)
    try:
        started = client.kernel_start("sci", "ipykernel", lease=6.0).kernel
    finally:
        client.close()
    began = time.monotonic()
    daemon.process.kill()
    daemon.process.wait()
    (daemon.state_dir / "daemon.json").unlink()
    eventually(lambda: time.monotonic() - began > 6.0 + GRACE + 1.0, "the lease lapsed while ssd was away")
    daemon = start_daemon(tmp_path, extra_env=_daemon_env(tmp_path))
    try:
        client = logged_in_client(daemon, tmp_path / "client", timeout=60)
        tap = EventTap(client, "kernel.")
        try:
            listed = eventually(lambda: _listed(client).get(started.kernel_id), "kernel re-adopted")
            assert (listed.state, listed.lease) == ("ready", 6.0)
            assert listed.lease_left is not None
            assert listed.lease_left > 0
            assert _culled(tap, started.kernel_id)["reason"] == "lease_expired"
        finally:
            tap.close()
            client.close()
        eventually(lambda: process_state(started.pid) in (None, "Z"), "the culled kernel's process gone")
    finally:
        daemon.stop_and_check()


def _kernel_worker(daemon: Daemon) -> psutil.Process:
    """The daemon's child that has kernels as children (user mode: every worker runs as this user)."""
    for child in psutil.Process(daemon.process.pid).children():
        if child.children():
            return child
    raise AssertionError("no kernel worker")


def test_restart_with_the_environment_gone(site: tuple[Daemon, Client, EventTap], tmp_path: Path) -> None:
    """The environment vanished under a running kernel: its restart says env_not_found naming it, the
    kernel stays listed (dead), the worker lives on; with the environment back, a restart works."""
    daemon, client, _ = site
    prefix = conda_copy(kernel_venv(), tmp_path / "envs" / "doomed")
    kernel = client.kernel_start("doomed", "ipykernel").kernel
    worker = _kernel_worker(daemon)
    moved = prefix.rename(tmp_path / "moved-away")
    try:
        with pytest.raises(RemoteError) as failed:
            client.kernel_restart(kernel.kernel_id)
        assert failed.value.code == "env_not_found"
        assert "doomed" in failed.value.message
        assert _listed(client)[kernel.kernel_id].state == "dead"
        assert worker.is_running()
        assert worker.pid in {c.pid for c in psutil.Process(daemon.process.pid).children()}
    finally:
        moved.rename(prefix)
    assert client.kernel_restart(kernel.kernel_id).kernel.state == "ready"

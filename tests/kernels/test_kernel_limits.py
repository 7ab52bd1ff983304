"""Limits and culling, with short timings set by configuration (SSD_KERNELS_*), never by patching:
kernels per user and per host, idle culling (Spyder kernels spared by default, connected kernels
spared), and the per-kernel address-space limit.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import cast

from envfixtures import conda_copy, kernel_venv, public_dir
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.connect import KernelConnectionInfo
from kerneltools import EventTap, evaluate, give_env, kernel_client, run, stop_all, two_users, user_client
from support.ci import require_root
from support.daemon import logged_in_client, start_daemon
from support.eventually import eventually
from users import error_of, system_daemon, users

from ssd.errors import ErrorCode
from ssd.topics import KERNEL, user_topic

MIB = 1024 * 1024


def test_per_user_and_per_host_limits(tmp_path: Path) -> None:
    """max_per_user=2, max_per_host=3: alice's third start and bob's second are refused limit_reached."""
    require_root()
    limits = {"SSD_KERNELS_MAX_PER_USER": "2", "SSD_KERNELS_MAX_PER_HOST": "3"}
    with two_users(tmp_path, limits) as pair:
        a, b = pair.a, pair.b
        a.kernel_start("sci", "ipykernel")
        a.kernel_start("sci", "ipykernel")
        refused = error_of(a.kernel_start, "sci", "ipykernel")
        assert refused.code == ErrorCode.LIMIT_REACHED
        assert "per user" in str(refused)
        b.kernel_start("sci", "ipykernel")
        host = error_of(b.kernel_start, "sci", "ipykernel")
        assert host.code == ErrorCode.LIMIT_REACHED
        assert "3 kernels" in str(host)
        a.kernel_shutdown(a.kernel_list()[0].kernel_id)
        b.kernel_start("sci", "ipykernel")  # room again
        assert len(b.kernel_list()) == 2


def test_idle_culling_spares_spyder_and_connected_kernels(tmp_path: Path) -> None:
    """idle_cull=3: an idle Jupyter kernel without clients is culled (event, files gone); a Spyder
    kernel and a Jupyter kernel with a connected client are not."""
    require_root()
    with users(1) as (alice,), public_dir() as where:
        give_env(alice, where)
        with system_daemon(tmp_path, {"SSD_KERNELS_IDLE_CULL": "3"}) as daemon:
            client = user_client(daemon, tmp_path, alice)
            tap = EventTap(client, user_topic(KERNEL, alice.name))
            try:
                spyder = client.kernel_start("sci", "spyder").kernel.kernel_id
                watched = client.kernel_start("sci", "ipykernel")
                with kernel_client(client.connection_info(watched.connection)):
                    lonely = client.kernel_start("sci", "ipykernel")
                    culled = tap.kernel_state(lonely.kernel.kernel_id, "culled")
                    assert culled["exit_code"] is not None
                    assert not Path(lonely.connection_file).exists()
                    alive = {k.kernel_id for k in client.kernel_list()}
                    assert alive == {spyder, watched.kernel.kernel_id}
            finally:
                tap.close()
                stop_all(client)


def test_memory_limit_applies_to_the_kernel(tmp_path: Path) -> None:
    """memory_limit=1024 (MiB): the kernel's RLIMIT_AS says so and a 2 GiB allocation fails in the kernel
    with MemoryError, which the kernel survives."""
    require_root()
    with users(1) as (alice,), public_dir() as where:
        give_env(alice, where)
        with system_daemon(tmp_path, {"SSD_KERNELS_MEMORY_LIMIT": "1024"}) as daemon:
            client = user_client(daemon, tmp_path, alice)
            try:
                info = client.connection_info(client.kernel_start("sci", "ipykernel").connection)
                limit = evaluate(info, "__import__('resource').getrlimit(__import__('resource').RLIMIT_AS)")
                assert limit == (1024 * MIB, 1024 * MIB)
                with kernel_client(info) as kc:
                    reply, _ = run(kc, "block = bytearray(2 * 1024 ** 3)")
                assert reply["ename"] == "MemoryError"
                assert evaluate(info, "1 + 1") == 2
            finally:
                stop_all(client)


def test_a_memory_limit_too_small_to_start_says_so(tmp_path: Path) -> None:
    """memory_limit=100 (MiB) cannot hold a Python kernel: the start fails with the limit named."""
    conda_copy(kernel_venv(), tmp_path / "envs" / "sci")
    extra = {"SSD_ENVS_ENVS_DIRS": str(tmp_path / "envs"), "SSD_KERNELS_MEMORY_LIMIT": "100"}
    daemon = start_daemon(tmp_path, extra_env=extra)
    client = logged_in_client(daemon, tmp_path / "client", timeout=60)
    try:
        refused = error_of(client.kernel_start, "sci", "ipykernel")
        assert refused.code == ErrorCode.KERNEL_START_FAILED
        assert "kernels.memory_limit" in str(refused)
        assert client.kernel_list() == []
    finally:
        client.close()
        daemon.stop_and_check()


def test_a_client_connecting_through_the_relay_counts_as_activity(tmp_path: Path) -> None:
    """The relay tells the worker about clients: connecting (without sending anything) raises the
    connection count and moves last_activity; disconnecting lowers the count again."""
    conda_copy(kernel_venv(), tmp_path / "envs" / "sci")
    daemon = start_daemon(tmp_path, extra_env={"SSD_ENVS_ENVS_DIRS": str(tmp_path / "envs")})
    client = logged_in_client(daemon, tmp_path / "client", timeout=60)
    try:
        reply = client.kernel_start("sci", "ipykernel")
        kernel_id = reply.kernel.kernel_id
        (before,) = client.kernel_list()
        assert before.connections == 0
        eventually(lambda: time.time() > before.last_activity, what="the clock past the first stamp")
        kc = BlockingKernelClient()
        kc.load_connection_info(cast(KernelConnectionInfo, client.connection_info(reply.connection)))
        kc.start_channels(iopub=False, stdin=False, hb=False, control=False)  # connects; sends nothing
        try:
            eventually(lambda: client.kernel_list()[0].connections == 1, what="one client counted")
            (during,) = client.kernel_list()
            assert during.last_activity > before.last_activity
        finally:
            kc.stop_channels()
        eventually(lambda: client.kernel_list()[0].connections == 0, what="client gone")
        client.kernel_shutdown(kernel_id)
    finally:
        client.close()
        daemon.stop_and_check()

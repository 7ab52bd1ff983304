"""A kernel in a Slurm job through the daemon, as a real user, once it runs: interrupted (KeyboardInterrupt,
the kernel lives on), restarted in place inside its allocation, dead with TIMEOUT at its time limit, and
nothing in clear on the link between the login node's relay and the job's.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from kerneltools import EventTap, evaluate, kernel_client, run
from slurmcluster import SlurmCluster
from support.eventually import eventually
from users import User

from slurm.daemonjobs import alice_on_slurm, jobs
from ssd.client import Client
from ssd.kernels.slurm.jobhost import ENDPOINT_FILE
from ssd.topics import KERNEL, user_topic


def _busy(client: Client, kernel_id: str) -> bool:
    return any(k.execution_state == "busy" for k in client.kernel_list() if k.kernel_id == kernel_id)


def _reply_to(kc: BlockingKernelClient, msg_id: str) -> dict[str, object]:
    while True:
        msg = kc.get_shell_msg(timeout=30)
        if msg["parent_header"].get("msg_id") == msg_id:
            return dict(msg["content"])


def test_interrupt_then_restart_in_place(tmp_path: Path, cluster: SlurmCluster) -> None:
    """SIGINT through Slurm stops a time.sleep with KeyboardInterrupt and the kernel runs on; restart gives a
    new kernel process in the same job (same job id, fresh globals), and shutdown leaves squeue empty."""
    with alice_on_slurm(tmp_path, cluster) as (_, _daemon, client):
        started = client.kernel_start("sci", "ipykernel", placement="slurm", slurm={"time": "5"})
        kernel_id, job_id = started.kernel.kernel_id, started.kernel.job_id
        info = client.connection_info(started.connection)
        with kernel_client(info) as kc:
            assert run(kc, "state = 42")[0]["status"] == "ok"
            msg_id = kc.execute("import time; time.sleep(60)", stop_on_error=False)
            eventually(lambda: _busy(client, kernel_id), what="kernel busy")
            assert client.kernel_interrupt(kernel_id, "signal").mode == "signal"
            answer = _reply_to(kc, msg_id)
            assert (answer["status"], answer["ename"]) == ("error", "KeyboardInterrupt")
            reply, printed = run(kc, "print(state + 1)")
            assert (reply["status"], printed.strip()) == ("ok", "43")
        before = evaluate(info, "(os.getpid(), os.environ['SLURM_JOB_ID'])")
        restarted = client.kernel_restart(kernel_id)
        assert (restarted.kernel.kernel_id, restarted.kernel.job_id) == (kernel_id, job_id)
        pid, job, fresh = evaluate(info, "(os.getpid(), os.environ['SLURM_JOB_ID'], 'state' not in globals())")
        assert (job, fresh) == (before[1], True)
        assert pid != before[0]
        assert [line.split()[0] for line in jobs(cluster)] == [str(job_id)]
        client.kernel_shutdown(kernel_id)
        eventually(lambda: jobs(cluster) == [], what="squeue empty after shutdown")


@pytest.mark.timeout(180)  # Slurm checks time limits every 30 s: a 1-minute job ends 60 to 90 s after its start
def test_a_kernel_at_its_time_limit_is_dead_with_timeout(tmp_path: Path, cluster: SlurmCluster) -> None:
    """A kernel asked with --time 1 runs on the node with at most 60 s left and is reported dead when Slurm
    ends its job: TIMEOUT, in words with Slurm's reason. (The folder's one time-limit test: it takes 60-90 s,
    Slurm checks limits every 30 s; it also covers the library's mapping of TIMEOUT.)"""
    with alice_on_slurm(tmp_path, cluster) as (alice, _daemon, client):
        tap = EventTap(client, user_topic(KERNEL, alice.name))
        try:
            started = client.kernel_start("sci", "ipykernel", placement="slurm", slurm={"time": "1"})
            kernel_id = started.kernel.kernel_id
            running = client.kernel_list()[0]
            assert running.node == cluster.node
            assert running.time_left is not None
            assert 0 < running.time_left <= 60
            dead = tap.kernel_state(kernel_id, "dead", timeout=150)
        finally:
            tap.close()
        assert (dead["job_id"], dead["slurm_state"]) == (started.kernel.job_id, "TIMEOUT"), dead
        assert dead["reason"] == "the job reached its time limit (TimeLimit)", dead  # Slurm's reason kept
        assert [k.state for k in client.kernel_list()] == ["dead"]
        client.kernel_shutdown(kernel_id)
        assert jobs(cluster) == []


@contextlib.contextmanager
def _capture(path: Path, ports: list[int]) -> Iterator[Path]:
    """tcpdump on the loopback (the test node is this machine), every byte of TCP to or from *ports*."""
    expression = " or ".join(f"tcp port {port}" for port in ports)
    argv = ["tcpdump", "-i", "lo", "--immediate-mode", "-U", "-s", "0", "-w", str(path), expression]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    line = process.stderr.readline()
    assert "listening on" in line, line
    try:
        yield path
    finally:
        time.sleep(0.5)  # a packet still on its way through the loopback when the capture ends
        process.send_signal(signal.SIGINT)
        process.wait(10)
        process.stderr.close()


def _plain_sink() -> tuple[socket.socket, list[bytes], threading.Thread]:
    """A listener on the loopback that keeps what one connection sends."""
    server = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def accept() -> None:
        connection, _ = server.accept()
        with connection:
            while chunk := connection.recv(65536):
                received.append(chunk)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    return server, received, thread


def _relay_ports(alice: User, kernel_id: str) -> list[int]:
    """The job relay's ports (the login node's relay and the worker's link connect to them)."""
    endpoint = alice.home / ".local/state/ssd/jobs" / kernel_id / ENDPOINT_FILE
    document = json.loads(endpoint.read_text())
    assert document["ip"] == "127.0.0.1"  # the node is this machine: the link runs over the loopback
    return sorted(int(port) for port in document["ports"].values())


def test_the_link_to_the_job_carries_no_marker_in_clear(tmp_path: Path, cluster: SlurmCluster) -> None:
    """A capture of the job relay's ports holds the bytes of a cell's code and output (the marker, 4000
    times) but not the marker; a capture of a plain TCP connection from the same kernel does show it."""
    marker = f"SECRET-{secrets.token_hex(8)}"
    with alice_on_slurm(tmp_path, cluster) as (alice, _daemon, client):
        started = client.kernel_start("sci", "ipykernel", placement="slurm", slurm={"time": "5"})
        ports = _relay_ports(alice, started.kernel.kernel_id)
        info = client.connection_info(started.connection)
        server, received, reader = _plain_sink()
        plain_port = server.getsockname()[1]
        with (
            server,
            _capture(tmp_path / "link.pcap", ports) as link,
            _capture(tmp_path / "plain.pcap", [plain_port]) as plain,
            kernel_client(info) as kc,
        ):
            reply, printed = run(kc, f"print('{marker}' * 4000)")
            assert (reply["status"], printed.count(marker)) == ("ok", 4000)
            send = f"with socket.create_connection(('127.0.0.1', {plain_port})) as s: s.sendall(b'{marker}')"
            code = f"import socket\n{send}"
            assert run(kc, code)[0]["status"] == "ok"
            reader.join(10)
        assert b"".join(received) == marker.encode()
        wire = link.read_bytes()
        assert len(wire) > 4000 * len(marker)  # the cell's output did cross the captured link
        assert marker.encode() not in wire
        assert marker.encode() in plain.read_bytes()  # a capture of a plain path shows it
        client.kernel_shutdown(started.kernel.kernel_id)
        eventually(lambda: jobs(cluster) == [], what="squeue empty after shutdown")

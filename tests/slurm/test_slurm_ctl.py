"""ssd-ctl start --slurm at a terminal while Slurm holds the job: the spinner shows the job and Slurm's
reason; Ctrl-C cancels the job (scancel), says so and exits 130."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from slurmcluster import SlurmCluster
from support.eventually import eventually
from users import User

from slurm.daemonjobs import alice_on_slurm, hold_node, jobs, release

CTL = [sys.executable, "-m", "ssd.ctl.main"]
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """ssd-ctl on a pseudo-terminal; everything it writes, as text without the terminal's escapes."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        leader, follower = pty.openpty()
        self.process = subprocess.Popen(argv, env=env, stdin=follower, stdout=follower, stderr=follower)
        os.close(follower)
        self.leader = leader
        self.chunks: list[bytes] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.leader, 65536)
            except OSError:  # the last writer closed the terminal
                return
            if not chunk:
                return
            self.chunks.append(chunk)

    def text(self) -> str:
        """What the terminal shows so far, escapes removed."""
        return _ANSI.sub("", b"".join(self.chunks).decode(errors="replace"))


def _job_ids(cluster: SlurmCluster) -> list[str]:
    """The ids of the jobs squeue lists."""
    return [line.split()[0] for line in jobs(cluster)]


def _logged_in(tmp_path: Path, host: str, alice: User) -> dict[str, str]:
    """The environment of an ssd-ctl at a terminal, its client directory logged in to *host* as alice."""
    env = {**os.environ, "SSD_CLIENT_DIR": str(tmp_path / "ctl"), "TERM": "xterm", "COLUMNS": "200"}
    login = [*CTL, "login", host, "--user", alice.name, "--password-stdin", "--trust"]
    logged = subprocess.run(login, env=env, input=alice.password + "\n", capture_output=True, text=True, timeout=60)
    assert logged.returncode == 0, logged.stderr
    return env


def test_ctl_start_shows_the_queued_reason_and_ctrl_c_cancels_the_job(tmp_path: Path, cluster: SlurmCluster) -> None:
    """While another job holds the node the spinner reads "queued: job N, waiting for resources"; SIGINT
    (Ctrl-C) scancels the job, ssd-ctl says so and exits 130, and the user has no kernel left."""
    with alice_on_slurm(tmp_path, cluster) as (alice, daemon, client):
        env = _logged_in(tmp_path, daemon.host, alice)
        holder = hold_node(cluster)
        try:
            terminal = Terminal([*CTL, "start", daemon.host, "sci", "--kind", "ipykernel", "--slurm"], env)
            queued = re.compile(r"queued: job (\d+), waiting for resources \(Slurm: PENDING\)")
            found = eventually(
                lambda: queued.search(terminal.text()), what="the queued reason on the terminal", timeout=60
            )
            job_id = found.group(1)
            assert [line.split()[0] for line in jobs(cluster) if "PENDING" in line] == [job_id]
            terminal.process.send_signal(signal.SIGINT)
            assert terminal.process.wait(30) == 130
            terminal.reader.join(10)
            assert f"cancelled the start: job {job_id} removed from Slurm's queue (scancel)" in terminal.text()
            assert "Traceback" not in terminal.text()
            eventually(lambda: job_id not in _job_ids(cluster), what="the queued job cancelled", timeout=60)
            assert client.kernel_list() == []
        finally:
            release(cluster, holder)


def test_two_starts_at_once_each_follow_and_cancel_their_own_job(tmp_path: Path, cluster: SlurmCluster) -> None:
    """Two ssd-ctl start --slurm of the same user and kind at once, both queued: each shows its own job (the
    host echoes each start's token in its kernel's events); Ctrl-C of one cancels its job only."""
    with alice_on_slurm(tmp_path, cluster) as (alice, daemon, client):
        env = _logged_in(tmp_path, daemon.host, alice)
        holder = hold_node(cluster)
        try:
            argv = [*CTL, "start", daemon.host, "sci", "--kind", "ipykernel", "--slurm"]
            first, second = Terminal(argv, env), Terminal(argv, env)
            queued = re.compile(r"queued: job (\d+), waiting for resources")
            one = eventually(lambda: queued.search(first.text()), what="the first start's queued job", timeout=60)[1]
            two = eventually(lambda: queued.search(second.text()), what="the second start's queued job", timeout=60)[1]
            assert one != two
            assert sorted(line.split()[0] for line in jobs(cluster) if "PENDING" in line) == sorted([one, two])
            first.process.send_signal(signal.SIGINT)
            assert first.process.wait(30) == 130
            first.reader.join(10)
            assert f"job {one} removed from Slurm's queue" in first.text()
            eventually(lambda: one not in _job_ids(cluster), what="the first start's job cancelled", timeout=60)
            assert [line.split()[0] for line in jobs(cluster) if "PENDING" in line] == [two]
            second.process.send_signal(signal.SIGINT)
            assert second.process.wait(30) == 130
            second.reader.join(10)
            assert f"job {two} removed from Slurm's queue" in second.text()
            eventually(
                lambda: not [line for line in jobs(cluster) if two in line.split()[:1]],
                what="the second job",
                timeout=60,
            )
            assert client.kernel_list() == []
        finally:
            release(cluster, holder)

"""A real one-node Slurm for tests and benchmarks: munged, slurmctld and slurmd from Debian's ``slurm-wlm``
and ``munge``, started as root with everything of theirs under one temporary folder.

Nothing is shared with a Slurm the machine may run itself: its own munge key and socket, its own ports
(free ones), its own ``slurm.conf`` (clients find it through ``SLURM_CONF``), state, spool, pid and log
files. The daemons run in the foreground as children of this process, so that stopping them is waiting
for them. ``slurm_cluster()`` starts it, waits (on ``sinfo``, not a sleep) until the node is idle, and at
the end cancels every job, waits until none is left, and stops the three daemons.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from support.eventually import eventually

from ssd.kernels.slurm import SlurmConfig

__all__ = ["SlurmCluster", "cluster_for_tests", "slurm_cluster"]

PARTITION = "debug"
NODE = "ssd-node"
COMMANDS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo", "scontrol")
# The node's hardware as slurmd -C reports it; the node line takes these keys.
_HARDWARE = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")


@dataclass(frozen=True)
class SlurmCluster:
    """A running test cluster: where its configuration is, and its one node and partition."""

    root: Path
    conf: Path
    node: str
    partition: str
    cpus: int
    memory_mib: int
    started_in: float  # seconds from the first daemon to an idle node

    def env(self) -> dict[str, str]:
        """An environment for Slurm's commands that reaches this cluster (and no other)."""
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "SLURM_CONF": str(self.conf)}

    def run(self, *argv: str) -> str:
        """Run a Slurm command as root against this cluster; its stdout (failing with its stderr)."""
        done = subprocess.run(argv, env=self.env(), capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}"
        return done.stdout

    def config(self, **limits: object) -> SlurmConfig:
        """A ``[slurm]`` section for this cluster (enabled, its slurm.conf), with *limits* set."""
        return SlurmConfig(enabled=True, conf=str(self.conf), **limits)  # type: ignore[arg-type]

    def queue(self, *options: str) -> list[str]:
        """squeue's lines (job id and state) for *options*, e.g. ``--jobs=7``."""
        return self.run("squeue", "--noheader", "--format=%i %T", *options).split("\n")[:-1]

    def node_state(self) -> str:
        """The node's state as sinfo prints it (idle, mixed, allocated, down*, ...)."""
        return self.run("sinfo", "--noheader", "--Node", "--format=%T", f"--nodes={self.node}").strip()


def missing_commands() -> list[str]:
    """The daemons and commands of Slurm and munge that are not installed here."""
    return [name for name in COMMANDS if shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin") is None]


@contextmanager
def slurm_cluster() -> Iterator[SlurmCluster]:
    """Start the cluster (as root), yield it once its node is idle, and stop everything afterwards."""
    assert os.geteuid() == 0, "the test Slurm runs its daemons as root"
    root = Path(tempfile.mkdtemp(prefix="ssd-slurm-"))
    # Users' jobs read slurm.conf and reach munge's socket in here: traversable, nothing writable but root's.
    root.chmod(0o755)
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        started = time.monotonic()
        hardware = _node_hardware()
        conf = _write_conf(root, hardware)
        stack.callback(_no_strays, conf)  # after the daemons stopped
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SLURM_CONF": str(conf)}
        munged = _start(stack, root, "munged", _munged_argv(root), env)
        eventually(lambda: (root / "munge" / "socket").exists() or _alive(munged), "munged's socket")
        _start(stack, root, "slurmctld", ["slurmctld", "-D", "-i"], env)
        _start(stack, root, "slurmd", ["slurmd", "-D", "-N", NODE], env)
        cluster = SlurmCluster(root, conf, NODE, PARTITION, int(hardware["CPUs"]), int(hardware["RealMemory"]), 0.0)
        eventually(lambda: cluster.node_state() == "idle", "the test Slurm's node to be idle", timeout=30)
        cluster = replace(cluster, started_in=time.monotonic() - started)
        stack.callback(_drain, cluster)  # runs first: no job may outlive the daemons
        yield cluster


@contextmanager
def cluster_for_tests() -> Iterator[SlurmCluster]:
    """slurm_cluster() for a test fixture: root required; skipped where Slurm is not installed (failed in CI)."""
    import pytest  # only tests call this; the benchmarks use slurm_cluster()
    from support.ci import IN_CI, require_root

    require_root()
    missing = missing_commands()
    if missing:
        message = f"Slurm is not installed here (no {', '.join(missing)}); .ci/run installs slurm-wlm and munge"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    with slurm_cluster() as running:
        yield running


def _node_hardware() -> dict[str, str]:
    """CPUs, sockets, cores, threads and memory of this machine, as slurmd itself sees them."""
    line = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30, check=True).stdout
    pairs = dict(word.split("=", 1) for word in line.split("\n", 1)[0].split() if "=" in word)
    missing = [key for key in _HARDWARE if key not in pairs]
    assert not missing, f"slurmd -C printed no {missing}: {line!r}"
    return {key: pairs[key] for key in _HARDWARE}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _write_conf(root: Path, hardware: dict[str, str]) -> Path:
    for folder in ("state", "spool", "log", "munge"):
        (root / folder).mkdir(mode=0o755)
    host = socket.gethostname().split(".", 1)[0]
    node = " ".join(f"{key}={value}" for key, value in hardware.items())
    lines = [
        f"ClusterName=ssdtest{secrets.token_hex(3)}",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={_free_port()}",
        f"SlurmdPort={_free_port()}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={root / 'munge' / 'socket'}",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SchedulerType=sched/backfill",
        "SchedulerParameters=batch_sched_delay=0",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "DefMemPerCPU=256",  # without it a job without --mem would take the node's whole memory
        "MinJobAge=10",  # an ended job stays in squeue (with why it ended) for this long
        "KillWait=2",
        "ReturnToService=2",
        "MpiDefault=none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "JobAcctGatherType=jobacct_gather/none",
        f"NodeName={NODE} NodeHostname={host} NodeAddr=127.0.0.1 {node} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
    ]
    conf = root / "slurm.conf"
    conf.write_text("\n".join(lines) + "\n")
    conf.chmod(0o644)
    return conf


def _munged_argv(root: Path) -> list[str]:
    key = root / "munge" / "key"
    key.write_bytes(secrets.token_bytes(1024))
    key.chmod(0o600)
    files = {"socket": "socket", "key-file": "key", "pid-file": "pid", "seed-file": "seed", "log-file": "log"}
    options = [f"--{option}={root / 'munge' / name}" for option, name in files.items()]
    return ["munged", "--foreground", "--force", *options]


def _start(stack: ExitStack, root: Path, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = (root / "log" / f"{name}.out").open("wb")
    stack.callback(log.close)
    process = subprocess.Popen(argv, env=env, cwd=root, stdout=log, stderr=log, start_new_session=True)
    stack.callback(_stop, process, name, root)
    return process


def _alive(process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, f"{process.args!r} exited with {process.returncode}"
    return False


def _stop(process: subprocess.Popen[bytes], name: str, root: Path) -> None:
    """SIGTERM one daemon and wait for it (SIGKILL if it does not go in 10 s)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"{name} ignored SIGTERM for 10 s; log in {root / 'log'}") from None


def _drain(cluster: SlurmCluster) -> None:
    """Cancel every job of the cluster and wait until squeue lists none (their processes are gone then)."""
    cluster.run("scancel", f"--partition={cluster.partition}")
    eventually(lambda: not cluster.queue(), "the test Slurm's jobs to end", timeout=30)


def _strays(conf: Path) -> list[str]:
    """Processes still holding this cluster's SLURM_CONF in their environment (daemons, slurmstepd, jobs)."""
    mark = f"SLURM_CONF={conf}\0".encode()
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and mark in (proc / "environ").read_bytes():
                argv = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{proc.name} {argv}")
        except OSError:  # gone meanwhile, or a kernel thread
            continue
    return found


def _no_strays(conf: Path) -> None:
    """Wait until no process of the cluster is left (slurmstepd exits after its job, on its own)."""

    def gone() -> bool:
        left = _strays(conf)
        assert not left, f"still running: {left}"
        return True

    eventually(gone, "the test Slurm's processes to exit")

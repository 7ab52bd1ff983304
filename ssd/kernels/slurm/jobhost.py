"""Inside a kernel's Slurm job: the kernel on ``ipc`` in a private folder, served through a CURVE relay.

The kernel worker submits ``python -I -m ssd.kernels.slurm.jobhost FOLDER``. FOLDER is the user's (0700, on
the filesystem the nodes share) and holds ``job.json`` (0600): the kernel's command line, environment,
folder and key, the relay's server keypair and the one client key it admits (the kernel worker's). This
process starts the kernel with its sockets in a 0700 folder of the node (no kernel port any other user
reaches), binds the relay on the address this node reaches the login node from, writes ``endpoint.json``
(0600) and waits for the kernel. When the kernel exits it is started again in place if the worker asked
(``restart`` in FOLDER), else this process ends and the job with it. SIGTERM (``scancel``, the time limit)
stops the kernel; SIGINT (``scancel --signal=INT --batch``) goes to the kernel's process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

import zmq
from jupyter_client.connect import write_connection_file

from ssd.files import write_atomic
from ssd.kernels.relay import Relay, RelayGate
from ssd.kernels.relayloop import RelayLoop

__all__ = [
    "ENDPOINT_FILE",
    "FAILURE_FILE",
    "JOB_FILE",
    "KERNEL_LOG",
    "RESTART_FILE",
    "main",
    "node_address",
    "read_private",
]

JOB_FILE = "job.json"
ENDPOINT_FILE = "endpoint.json"
RESTART_FILE = "restart"
FAILURE_FILE = "failure"  # why the kernel could not start on the node, for the worker's error
KERNEL_LOG = "kernel.log"
_DOMAIN = "ssd-job"


def read_private(path: Path) -> dict[str, Any]:
    """A JSON file of this user's that no one else may read (the link's keys are in it)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise PermissionError(f"{path} must be yours and 0600")
        data = json.loads(handle.read())
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds no JSON object")
    return data


def node_address(login: str) -> str:
    """The address of the interface this node reaches *login* through (a UDP connect sends nothing)."""
    family = socket.AF_INET6 if ":" in login else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((login, 9))
        return str(probe.getsockname()[0])


class JobHost:
    """The kernel process of one job, restarted in place on request, and its relay."""

    def __init__(self, folder: Path, job: dict[str, Any]) -> None:
        self.folder = folder
        self.job = job
        self.sockets = Path(tempfile.mkdtemp(prefix="ssd-k-"))  # 0700, on the node itself
        self.connection_file = self.sockets / "kernel.json"
        _, info = write_connection_file(
            str(self.connection_file),
            ip=str(self.sockets / "k"),
            key=str(job["key"]).encode(),
            transport="ipc",
            signature_scheme="hmac-sha256",
        )
        self.info = dict(info)
        self.process: subprocess.Popen[bytes] | None = None
        self.stopping = False

    def spawn(self) -> None:
        """The kernel in a session of its own, its output appended to the job folder's kernel.log."""
        argv = [*self.job["argv"][:-1], str(self.connection_file)]  # the worker's argv ends with -f FILE
        fd = os.open(self.folder / KERNEL_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self.process = subprocess.Popen(  # argv from the worker's record, never through a shell
                argv,
                cwd=self.job["cwd"],
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=fd,
                start_new_session=True,
                umask=int(self.job["umask"]),
            )
        finally:
            os.close(fd)

    def environment(self) -> dict[str, str]:
        """The kernel's environment as the worker built it, plus the job's own SLURM_* (job id, CPUs, ...)."""
        return {**self.job["environ"], **{k: v for k, v in os.environ.items() if k.startswith("SLURM_")}}

    def signal_kernel(self, signum: int, frame: FrameType | None = None) -> None:
        """Pass SIGINT to the kernel's group; SIGTERM also means: do not restart it."""
        if signum == signal.SIGTERM:
            self.stopping = True
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def publish(self, ip: str, ports: dict[str, int], generation: int) -> None:
        """endpoint.json: where the relay listens, and which start of the kernel this is."""
        assert self.process is not None
        endpoint = {"ip": ip, "ports": ports, "generation": generation, "node": socket.gethostname()}
        write_atomic(self.folder / ENDPOINT_FILE, json.dumps({**endpoint, "pid": self.process.pid}))

    def run(self, ip: str) -> int:
        """Serve the kernel until it ends without a restart asked for; its exit code."""
        ctx: zmq.Context[Any] = zmq.Context()
        gate = RelayGate(ctx)
        loop = RelayLoop(ctx)
        link = self.job["link"]
        gate.admit(_DOMAIN, link["client_publickey"])
        keys = {"curve_publickey": link["server_publickey"], "curve_secretkey": link["server_secretkey"]}
        relay = Relay(loop, self.info, ip, keys, domain=_DOMAIN)
        try:
            ports = relay.start()
            return self._serve(ip, ports)
        finally:
            relay.stop()
            loop.stop()
            gate.stop()
            ctx.term()
            shutil.rmtree(self.sockets, ignore_errors=True)

    def _serve(self, ip: str, ports: dict[str, int]) -> int:
        generation = 0
        while True:
            self.spawn()
            self.publish(ip, ports, generation)
            assert self.process is not None
            code = self.process.wait()
            restart = self.folder / RESTART_FILE
            if self.stopping or not restart.exists():
                return code
            restart.unlink()
            generation += 1


def _cannot_start(folder: Path, reason: str) -> int:
    """Why the kernel cannot start here, for the job log and for the worker (FAILURE_FILE); exit code 3."""
    reason += " (environments must be on a filesystem the login node and the nodes share)"
    print(f"ssd: {reason}", file=sys.stderr)
    write_atomic(folder / FAILURE_FILE, reason)
    return 3


def main(argv: list[str]) -> int:
    """``python -I -m ssd.kernels.slurm.jobhost FOLDER``."""
    if len(argv) != 2:
        print("usage: python -I -m ssd.kernels.slurm.jobhost FOLDER", file=sys.stderr)
        return 2
    folder = Path(argv[1])
    os.umask(0o077)
    job = read_private(folder / JOB_FILE)
    if not os.access(job["argv"][0], os.X_OK):
        return _cannot_start(folder, f"the environment's Python {job['argv'][0]} is not on node {socket.gethostname()}")
    host = JobHost(folder, job)
    signal.signal(signal.SIGTERM, host.signal_kernel)
    signal.signal(signal.SIGINT, host.signal_kernel)
    return host.run(node_address(str(job["login"])))


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Jupyter Server: REST POST /api/kernels to the first output of a cell, an ssd kernelspec vs a local one.

Usage: ``python benchmarks/bench_jupyter.py [--runs N] [--source VENV] [--json]``

One Jupyter Server (a subprocess on loopback, with a token) has two kernelspecs
for the same environment (a copy of VENV, or one built with pip):

- *local* — ``python -m ipykernel_launcher -f {connection_file}`` with that
  environment's Python: Jupyter starts the kernel itself;
- *ssd* — the spec ``ssd-ctl kernelspec install`` writes: the provisioner asks a
  user-mode daemon on loopback (its kernel worker already running, started by
  one untimed warm-up) for the kernel and connects to it through the CURVE
  relay. The client key has a session there (as after ``ssd-ctl login``).

One run: POST /api/kernels, open the kernel's websocket, send
``execute_request`` for ``print(1)``, stop the clock at the first ``stream``
output of that request; then DELETE the kernel (untimed). The two alternate
(local, ssd, local, ...) so that load hits both alike. Figures are medians;
the ratio is ssd / local. Target: at most 1.2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import harness
from bench_kernels import daemon
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

from ssd.ctl.kernelspec import spec_document

TARGET_RATIO = 1.2


class Server:
    """``jupyter server`` on a free loopback port with a token; the kernelspecs under TOP/jupyter."""

    def __init__(self, top: Path) -> None:
        self.token = secrets.token_hex(16)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        env = {
            **os.environ,
            "SSD_CLIENT_DIR": str(top / "client"),
            "JUPYTER_PATH": str(top / "jupyter"),
            "JUPYTER_CONFIG_DIR": str(top / "jupyter-config"),
            "JUPYTER_DATA_DIR": str(top / "jupyter-data"),
            "JUPYTER_RUNTIME_DIR": str(top / "jupyter-runtime"),
        }
        argv = [
            *(sys.executable, "-m", "jupyter_server", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}"),
            *(f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={top}"),
            *(["--ServerApp.allow_root=True"] if os.geteuid() == 0 else []),
        ]
        self.log = top / "jupyter-server.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(argv, env=env, cwd=top, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One REST call; the decoded answer."""
        request = HTTPRequest(
            f"http://127.0.0.1:{self.port}{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
            body=json.dumps(body) if body is not None else None,
            request_timeout=120,
        )
        answer = await AsyncHTTPClient().fetch(request)
        return json.loads(answer.body or b"null")

    async def wait_ready(self) -> None:
        """Until GET /api/status answers (30 s at most)."""
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Jupyter server did not start:\n{self.log.read_text()}")
            try:
                await self.request("GET", "/api/status")
                return
            except OSError:
                await asyncio.sleep(0.1)

    async def first_output(self, spec: str) -> float:
        """Seconds from POST /api/kernels to the first output of ``print(1)``; the kernel is deleted after."""
        began = time.perf_counter()
        kernel = await self.request("POST", "/api/kernels", {"name": spec})
        url = f"ws://127.0.0.1:{self.port}/api/kernels/{kernel['id']}/channels?token={self.token}"
        socket_ = await websocket_connect(url)
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": "execute_request", "username": "bench", "session": msg_id}
        content = {"code": "print(1)", "silent": False, "store_history": False}
        message = {"header": {**header, "version": "5.3"}, "parent_header": {}, "metadata": {}, "content": content}
        await socket_.write_message(json.dumps({**message, "channel": "shell"}))
        while True:
            raw = await asyncio.wait_for(socket_.read_message(), 120)
            if raw is None:
                raise RuntimeError(f"the kernel's websocket closed before any output ({spec})")
            reply = json.loads(raw)
            if reply.get("msg_type") == "stream" and reply["parent_header"].get("msg_id") == msg_id:
                elapsed = time.perf_counter() - began
                break
        socket_.close()
        await self.request("DELETE", f"/api/kernels/{kernel['id']}")
        return elapsed

    def stop(self) -> None:
        """SIGTERM, then wait."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)


def write_specs(top: Path, python: Path, daemon_host: str, user: str) -> None:
    """The local kernelspec and the ssd one, for the same environment."""
    kernels = top / "jupyter" / "kernels"
    env = {"name": "bench", "prefix": str(python.parent.parent), "python": ".".join(map(str, sys.version_info[:2]))}
    documents = {
        "local": {"argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"], "language": "python"},
        "ssd": spec_document(daemon_host, daemon_host, user, env, "ipykernel", "bench", encrypted=True),
    }
    for name, document in documents.items():
        (kernels / name).mkdir(parents=True)
        (kernels / name / "kernel.json").write_text(json.dumps({"display_name": name, **document}))


async def alternate(server: Server, runs: int) -> dict[str, list[float]]:
    """Warm up both, then alternate local and ssd runs."""
    await server.wait_ready()
    for spec in ("ssd", "local"):
        await server.first_output(spec)
    times: dict[str, list[float]] = {"local": [], "ssd": []}
    for n in range(runs):
        for spec in ("local", "ssd"):
            times[spec].append(await server.first_output(spec))
        print(f"  run {n + 1}/{runs}: local {times['local'][-1]:.3f} s, ssd {times['ssd'][-1]:.3f} s", file=sys.stderr)
    return times


def measure(top: Path, python: Path, runs: int) -> dict[str, Any]:
    """Start the daemon and the server; return medians and the ratio."""
    with daemon(top) as running:
        with harness.logged_in(top, running, timeout=90) as client:  # the key's session, which the provisioner uses
            user = str(client.whoami().user)
        write_specs(top, python, f"127.0.0.1:{running.control_port}", user)
        server = Server(top)
        try:
            times = asyncio.run(alternate(server, runs))
        finally:
            server.stop()
    local, ssd = statistics.median(times["local"]), statistics.median(times["ssd"])
    return {
        "runs": runs,
        "local_median_s": local,
        "ssd_median_s": ssd,
        "local_s": times["local"],
        "ssd_s": times["ssd"],
        "ratio": ssd / local,
        "target_ratio": TARGET_RATIO,
        "met": ssd / local <= TARGET_RATIO,
    }


def main() -> int:
    """Parse arguments, build or take the environment, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="starts of each kernelspec to take the median of (10)")
    parser.add_argument("--source", type=Path, help="an existing venv with ipykernel to copy from")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ssd-bench-jupyter-") as folder:
        top = Path(folder)
        python = harness.kernel_env(top, args.source) / "bin" / "python"
        return harness.finish(
            "bench_jupyter",
            lambda: measure(top, python, args.runs),
            as_json=args.json,
            show=show,
            log=top / "daemon.log",
        )


def show(result: dict[str, Any]) -> None:
    """The figures as a short table."""
    print(f"REST POST /api/kernels to the first output of print(1) (median of {result['runs']})")
    print(f"  local kernelspec (Jupyter starts ipykernel) : {result['local_median_s'] * 1000:8.1f} ms")
    print(f"  ssd kernelspec (provisioner, CURVE relay)   : {result['ssd_median_s'] * 1000:8.1f} ms")
    verdict = "met" if result["met"] else "MISSED"
    print(f"  ratio ssd / local: {result['ratio']:.3f}  (target at most {TARGET_RATIO:.1f}: {verdict})")


if __name__ == "__main__":
    sys.exit(main())

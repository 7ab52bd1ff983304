"""Kernel channels: direct vs ssd's CURVE relay vs the local tunnel, on one kernel, in one run.

Usage: ``python benchmarks/bench_relay.py [--runs N] [--mb N] [--kind ipykernel|spyder] [--source VENV] [--json]``

A daemon in user mode starts one kernel; it is then reached three ways at once:

- *direct*: the kernel's own ports on 127.0.0.1, from its own connection file;
- *relay*: the connection info the daemon gives clients (the relay's ports and
  its CURVE keys), which jupyter_client 8.9+ connects to with CURVE;
- *tunnel*: ``ssd.client.tunnel.Tunnel`` on that info, and a classic connection
  to its plain local ports.

Measured per path: the execute round trip of ``pass`` (send to execute_reply,
one BlockingKernelClient each, samples taken path after path so load falls on
all alike) and iopub throughput of a cell that prints N MB (execute to the
idle status after the last stream byte). The relay's cost is reported against
direct; see benchmarks/README.md for the targets.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import pwd
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, cast

import psutil
import zmq
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.connect import KernelConnectionInfo
from rich.console import Console
from rich.table import Table

from ssd.client import Client, KnownHosts
from ssd.client.identity import client_keypair
from ssd.client.tunnel import Tunnel
from ssd.errors import SSDError
from ssd.replies import KernelStartReply

PATHS = ("direct", "relay", "tunnel")
TARGET_ADDED_MS = 0.5  # the relay's execute round trip, minus direct's (p50)
TARGET_FRACTION = 0.70  # the relay's iopub throughput, as a fraction of direct's (medians)
ROUND_TRIPS_PER_RUN = 100  # per path and run: --runs 2 or more gives at least 200 samples
WARMUP_ROUND_TRIPS = 50
BASE_PYTHON = "/usr/bin/python3"
START_TIMEOUT = 60.0  # daemon info file, kernel_start, a client's first kernel_info
MESSAGE_TIMEOUT = 60.0  # the longest wait for any one reply or iopub message
STOP_TIMEOUT = 10.0  # the daemon's time to exit after SIGTERM
ENV_NAME = "bench"


class BenchError(Exception):
    """Something failed or answered wrongly; the run is void."""


@dataclass(frozen=True)
class Settings:
    """What to measure."""

    runs: int  # rounds; each takes ROUND_TRIPS_PER_RUN round trips and one transfer per path
    megabytes: int  # printed per transfer, in 1 MB writes
    kind: str  # ipykernel or spyder

    @property
    def code(self) -> str:
        """The cell that prints: one flushed 1 MB line at a time, so each is its own stream message."""
        return (
            "import sys\ns = 'x' * 999_999 + '\\n'\n"
            f"for _ in range({self.megabytes}):\n    sys.stdout.write(s)\n    sys.stdout.flush()\n"
        )

    @property
    def expected_bytes(self) -> int:
        """What every transfer must deliver."""
        return self.megabytes * 1_000_000


@dataclass
class Tally:
    """What the runs measured so far on one path."""

    latencies_ns: list[int] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)  # MB/s of each transfer


@dataclass(frozen=True)
class PathResult:
    """One path's figures."""

    name: str
    p50_ms: float
    p90_ms: float
    round_trips: int
    mb_per_s: float  # median over the transfers
    mb_per_s_runs: tuple[float, ...]


@dataclass(frozen=True)
class Comparison:
    """A path against direct, and the targets it has (None: informational)."""

    name: str
    added_ms: float  # p50 round trip minus direct's
    fraction: float  # median throughput / direct's
    target_added_ms: float | None
    target_fraction: float | None

    @property
    def latency_met(self) -> bool | None:
        """Whether the added latency is within its target."""
        return None if self.target_added_ms is None else self.added_ms <= self.target_added_ms

    @property
    def throughput_met(self) -> bool | None:
        """Whether the throughput fraction reaches its target."""
        return None if self.target_fraction is None else self.fraction >= self.target_fraction


@dataclass(frozen=True)
class Report:
    """Everything one run measured."""

    settings: Settings
    environment: dict[str, str]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    paths: list[PathResult]
    comparisons: list[Comparison]


def progress(message: str) -> None:
    """Say what the run is doing, on stderr so that --json output stays clean."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- the kernel's environment, the daemon, the kernel ----------------------------------


def prepare_env(top: Path, source: Path | None) -> Path:
    """TOP/envs/bench: a copy of *source*, or a new venv with spyder-kernels (and ipykernel) from pip."""
    venv = top / "envs" / ENV_NAME
    venv.parent.mkdir()
    if source is not None:
        progress(f"copying {source}")
        subprocess.run(["cp", "-a", str(source), str(venv)], check=True)
        return venv
    progress("building the environment with pip")
    subprocess.run([BASE_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q"]
    subprocess.run([*pip, "spyder-kernels==3.1.*"], check=True)
    return venv


@contextlib.contextmanager
def daemon(top: Path) -> Iterator[dict[str, Any]]:
    """``python -m ssd`` in user mode on loopback; yields its daemon.json; SIGTERM and wait on the way out."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SSD_")},
        "SSD_CONFIG_DIR": str(top / "cfg"),
        "SSD_STATE_DIR": str(top / "state"),
        "SSD_ENVS_VENV_DIRS": str(top / "envs"),
        "SSD_ENVS_KNOWN_ROOTS": "false",
    }
    argv = [sys.executable, "-m", "ssd", "--bind", "127.0.0.1", "--port", "0", "--no-announce"]
    log_path = top / "daemon.log"
    with log_path.open("wb") as log:
        # A session of its own: Ctrl-C reaches this script only, which then shuts the kernel down through it.
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=top, start_new_session=True)
    try:
        yield wait_for_info(process, top / "state" / "daemon.json", log_path)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            progress(f"the daemon did not stop within {STOP_TIMEOUT:g}s of SIGTERM; killed")
        kill_leftover_kernels(top)


def wait_for_info(process: subprocess.Popen[bytes], info_path: Path, log_path: Path) -> dict[str, Any]:
    """The daemon's info file once written; fail if it exits or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT
    while not info_path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise BenchError(f"the daemon did not start:\n{tail(log_path)}")
        time.sleep(0.05)
    info: dict[str, Any] = json.loads(info_path.read_text())
    return info


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log."""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def logged_in(top: Path, info: dict[str, Any]) -> Iterator[Client]:
    """A client whose key the administrator authorized for this user, logged in with it."""
    identity = client_keypair(top / "client")
    user = pwd.getpwuid(os.geteuid()).pw_name
    keys = top / "cfg" / "authorized_keys.d"
    keys.mkdir(mode=0o700, parents=True, exist_ok=True)
    (keys / user).write_bytes(identity.public + b"\n")
    (keys / user).chmod(0o600)
    known_hosts = KnownHosts(top / "client" / "known_hosts")
    host = f"127.0.0.1:{info['control_port']}"
    with Client(host, trust=True, identity=identity, known_hosts=known_hosts, timeout=START_TIMEOUT) as client:
        client.login(user)
        yield client


@contextlib.contextmanager
def kernel(client: Client, kind: str) -> Iterator[KernelStartReply]:
    """One kernel started through the daemon; yields the kernel_start reply; shuts it down on the way out."""
    progress(f"starting the kernel ({kind})")
    reply = client.kernel_start(ENV_NAME, kind, timeout=START_TIMEOUT)
    try:
        yield reply
    finally:
        try:
            client.kernel_shutdown(reply.kernel.kernel_id)
        except (SSDError, OSError) as exc:  # kill_leftover_kernels, after the daemon stopped, sees to it
            progress(f"kernel_shutdown failed: {exc}")


def kill_leftover_kernels(top: Path) -> None:
    """SIGKILL any kernel of this run still alive (kernels outlive their worker by design).

    They are this run's own: their Python is in TOP/envs, which no other process runs.
    """
    for process in psutil.process_iter(["pid", "cmdline"]):
        if any(arg.startswith(f"{top}/") for arg in process.info["cmdline"] or ()):
            progress(f"kernel pid {process.pid} outlived the daemon; killing it")
            with contextlib.suppress(psutil.Error):
                process.kill()


@contextlib.contextmanager
def tunnel(relay: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The local tunnel to the relay; yields its classic local connection info."""
    forward = Tunnel(relay)
    try:
        yield forward.start()
    finally:
        forward.stop()


def connection_infos(client: Client, reply: KernelStartReply) -> tuple[dict[str, Any], dict[str, Any]]:
    """The kernel's own connection info (its file, readable: the daemon runs as this user) and the relay's."""
    direct: dict[str, Any] = json.loads(Path(reply.connection_file).read_text())
    relay = client.connection_info(reply.connection)
    if "curve_publickey" not in relay:
        raise BenchError("the daemon gave no CURVE relay (transport plain?): nothing to compare")
    if relay["shell_port"] == direct["shell_port"]:
        raise BenchError("the relay's ports are the kernel's own")
    return direct, relay


# -- the clients and the measurements --------------------------------------------------


@contextlib.contextmanager
def kernel_client(info: dict[str, Any], *, iopub: bool) -> Iterator[BlockingKernelClient]:
    """A jupyter_client BlockingKernelClient on *info* (CURVE if it has the keys), ready; stopped on the way out."""
    kc = BlockingKernelClient()
    kc.load_connection_info(cast(KernelConnectionInfo, info))
    kc.start_channels(shell=True, iopub=iopub, stdin=False, hb=False, control=False)
    try:
        if iopub:  # kernel_info until iopub delivers: the subscription reached the kernel
            kc.wait_for_ready(timeout=START_TIMEOUT)
        else:
            execute(kc, "pass")
        yield kc
    finally:
        kc.stop_channels()


def execute(kc: BlockingKernelClient, code: str) -> tuple[str, int]:
    """Run *code*; return its msg_id and the nanoseconds to its execute_reply (which must be ok)."""
    began = time.perf_counter_ns()
    msg_id: str = kc.execute(code, store_history=False)
    reply = shell_reply(kc, msg_id)
    elapsed = time.perf_counter_ns() - began
    if reply["content"]["status"] != "ok":
        raise BenchError(f"execute of {code[:40]!r} failed: {reply['content']}")
    return msg_id, elapsed


def shell_reply(kc: BlockingKernelClient, msg_id: str) -> dict[str, Any]:
    """The shell reply to *msg_id* (older replies are skipped); a kernel that does not answer fails the run."""
    while True:
        try:
            reply: dict[str, Any] = kc.get_shell_msg(timeout=MESSAGE_TIMEOUT)
        except queue.Empty:
            raise BenchError(f"no shell reply within {MESSAGE_TIMEOUT:g}s") from None
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply


def iopub_message(kc: BlockingKernelClient) -> dict[str, Any]:
    """The next iopub message; none in time fails the run."""
    try:
        msg: dict[str, Any] = kc.get_iopub_msg(timeout=MESSAGE_TIMEOUT)
    except queue.Empty:
        raise BenchError(f"no iopub message within {MESSAGE_TIMEOUT:g}s") from None
    return msg


def transfer(info: dict[str, Any], settings: Settings) -> float:
    """MB/s of one printing cell, from execute to the idle status after its last stream byte.

    A fresh subscriber each time: iopub goes to every subscriber, so a path
    that is not measured must not be subscribed.
    """
    with kernel_client(info, iopub=True) as kc:
        began = time.perf_counter()
        msg_id: str = kc.execute(settings.code, store_history=False)
        received = 0
        while True:
            msg = iopub_message(kc)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                received += len(msg["content"]["text"].encode())
            elif msg["msg_type"] == "error":
                raise BenchError(f"the printing cell failed: {msg['content'].get('evalue')}")
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        seconds = time.perf_counter() - began
        if shell_reply(kc, msg_id)["content"]["status"] != "ok":
            raise BenchError("the printing cell's execute_reply is not ok")
    if received != settings.expected_bytes:
        raise BenchError(f"{received} stream bytes arrived, {settings.expected_bytes} expected")
    return received / 1e6 / seconds


def measure(infos: dict[str, dict[str, Any]], settings: Settings) -> dict[str, Tally]:
    """Warm up, then runs of round trips (path after path, sample by sample) and one transfer per path."""
    tallies = {name: Tally() for name in PATHS}
    with contextlib.ExitStack() as stack:
        clients = {name: stack.enter_context(kernel_client(infos[name], iopub=False)) for name in PATHS}
        progress(f"warming up: {WARMUP_ROUND_TRIPS} round trips per path")
        for _ in range(WARMUP_ROUND_TRIPS):
            for kc in clients.values():
                execute(kc, "pass")
        for run in range(settings.runs):
            order = PATHS[run % len(PATHS) :] + PATHS[: run % len(PATHS)]  # no path always goes first
            progress(f"run {run + 1} of {settings.runs}: {ROUND_TRIPS_PER_RUN} round trips per path")
            for _ in range(ROUND_TRIPS_PER_RUN):
                for name in order:
                    tallies[name].latencies_ns.append(execute(clients[name], "pass")[1])
            for name in order:
                tallies[name].rates.append(transfer(infos[name], settings))
                progress(f"  {name}: {settings.megabytes} MB at {tallies[name].rates[-1]:.0f} MB/s")
    return tallies


# -- the run ---------------------------------------------------------------------------


def run(settings: Settings, source: Path | None) -> Report:
    """Prepare, start the daemon and the kernel, measure, clean up (also on error or Ctrl-C)."""
    with tempfile.TemporaryDirectory(prefix="ssd-bench-relay-") as folder:
        top = Path(folder)
        prepare_env(top, source)
        load_before = os.getloadavg()
        with daemon(top) as info, logged_in(top, info) as client, kernel(client, settings.kind) as reply:
            direct, relay = connection_infos(client, reply)
            with tunnel(relay) as local:
                tallies = measure({"direct": direct, "relay": relay, "tunnel": local}, settings)
        load_after = os.getloadavg()
    paths = [summarize(name, tallies[name]) for name in PATHS]
    return Report(settings, environment(), load_before, load_after, paths, compare(paths))


def summarize(name: str, tally: Tally) -> PathResult:
    """Percentiles of the round trips, median of the transfers."""
    cuts = statistics.quantiles(tally.latencies_ns, n=10, method="inclusive")
    p50 = statistics.median(tally.latencies_ns)
    rate = statistics.median(tally.rates)
    return PathResult(name, p50 / 1e6, cuts[8] / 1e6, len(tally.latencies_ns), rate, tuple(tally.rates))


def compare(paths: Sequence[PathResult]) -> list[Comparison]:
    """The relay (with targets) and the tunnel (informational) against direct."""
    by_name = {path.name: path for path in paths}
    direct = by_name["direct"]

    def against(name: str, added: float | None, fraction: float | None) -> Comparison:
        path = by_name[name]
        return Comparison(name, path.p50_ms - direct.p50_ms, path.mb_per_s / direct.mb_per_s, added, fraction)

    return [against("relay", TARGET_ADDED_MS, TARGET_FRACTION), against("tunnel", None, None)]


def environment() -> dict[str, str]:
    """What the numbers depend on."""
    return {
        "python": platform.python_version(),
        "pyzmq": zmq.pyzmq_version(),
        "libzmq": zmq.zmq_version(),
        "jupyter_client": version("jupyter_client"),
        "cpus": str(os.cpu_count()),
        "platform": platform.platform(),
    }


def as_json(report: Report) -> str:
    """The report as one JSON document."""
    document = asdict(report)
    document["comparisons"] = [
        {**asdict(c), "latency_met": c.latency_met, "throughput_met": c.throughput_met} for c in report.comparisons
    ]
    document["all_targets_met"] = all(
        met is not False for c in report.comparisons for met in (c.latency_met, c.throughput_met)
    )
    return json.dumps(document, indent=2)


def verdict(met: bool | None) -> str:
    """How a comparison against a target reads in the table."""
    return "-" if met is None else "[green]met[/]" if met else "[red]missed[/]"


def print_tables(report: Report) -> None:
    """The paths and the comparisons as terminal tables."""
    console = Console()
    s, env = report.settings, report.environment
    console.print(
        f"one {s.kind} kernel; round trip: execute 'pass' to execute_reply; "
        f"throughput: a cell printing {s.megabytes} MB, execute to idle; {s.runs} runs",
        highlight=False,
    )
    table = Table("path", "p50 ms", "p90 ms", "round trips", "MB/s (median)", "MB/s by run")
    for column in table.columns[1:]:
        column.justify = "right"
    for path in report.paths:
        runs = " ".join(f"{rate:.0f}" for rate in path.mb_per_s_runs)
        table.add_row(
            path.name, f"{path.p50_ms:.3f}", f"{path.p90_ms:.3f}", str(path.round_trips), f"{path.mb_per_s:.0f}", runs
        )
    console.print(table)
    ratios = Table("vs direct", "added ms (p50)", "target", "result", "throughput", "target", "result")
    for column in ratios.columns[1:]:
        column.justify = "right"
    for c in report.comparisons:
        added = "-" if c.target_added_ms is None else f"<= {c.target_added_ms}"
        fraction = "-" if c.target_fraction is None else f">= {c.target_fraction:.0%}"
        ratios.add_row(
            c.name,
            f"{c.added_ms:+.3f}",
            added,
            verdict(c.latency_met),
            f"{c.fraction:.0%}",
            fraction,
            verdict(c.throughput_met),
        )
    console.print(ratios)
    before = " ".join(f"{x:.2f}" for x in report.load_before)
    after = " ".join(f"{x:.2f}" for x in report.load_after)
    console.print(
        f"load average before {before}, after {after}; {env['cpus']} CPUs\n"
        f"python {env['python']}, pyzmq {env['pyzmq']}, libzmq {env['libzmq']}, jupyter_client {env['jupyter_client']}",
        highlight=False,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the benchmark, print the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="runs, each 100 round trips and 1 transfer per path (5)")
    parser.add_argument("--mb", type=int, default=50, help="megabytes the printing cell writes (50)")
    parser.add_argument("--kind", choices=["ipykernel", "spyder"], default="ipykernel")
    parser.add_argument("--source", type=Path, help="an existing venv with spyder-kernels to copy (not modified)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON document")
    args = parser.parse_args(argv)
    if args.runs < 2 or args.mb < 1:
        parser.error("--runs must be at least 2 (200 round trips per path) and --mb at least 1")
    try:
        report = run(Settings(args.runs, args.mb, args.kind), args.source)
    except (BenchError, SSDError, OSError, subprocess.CalledProcessError, TimeoutError) as exc:
        print(f"bench_relay: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench_relay: interrupted; kernel, daemon and temporary files cleaned up", file=sys.stderr)
        return 130
    if args.json:
        print(as_json(report))
    else:
        print_tables(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

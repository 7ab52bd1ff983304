"""What a flood before login costs everyone else: ping latency and daemon memory, quiet against flooded, one run.

Usage: ``python benchmarks/bench_edge.py [--quick] [--json]``

One daemon (user mode, on loopback). One client pings it in lockstep, first
with nobody else around, then while attacker processes send, back to back,
one multipart message of 60 MB (on the wire) of 2-byte frames each, with a
fresh CURVE key, alternately to the control and the events port (issue 13,
finding 1). Throughout, the daemon's memory (the broker and every process
below it) is sampled. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import harness
import psutil
import zmq
from harness import progress
from rich.console import Console
from rich.table import Table

from ssd.client import Client, KnownHosts
from ssd.client.identity import client_keypair

FLOOD_WIRE = 60_000_000  # bytes on the wire per attack, as in the finding
CURVE_FRAME_WIRE = 37  # one 2-byte frame under CURVE
FLOOD_GIVE_UP = 120.0


@dataclass(frozen=True)
class Phase:
    """What one phase measured."""

    pings: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    peak_mib: float  # the daemon's total resident memory at its highest
    floods: int
    failed_pings: int


@dataclass(frozen=True)
class Report:
    """The whole run."""

    environment: dict[str, str]
    quiet: Phase
    flooded: Phase
    start_mib: float
    edge_restarts: int
    guard_cuts: int


# -- the attacker (a child process: this script with --flood) --------------------------------


def flood(port: int, kind: str, server_key: bytes) -> str:
    """Send one message of 2-byte frames with a fresh key; wait until it is cut off or delivered."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER if kind == "dealer" else zmq.XSUB)
    sock.curve_serverkey = server_key
    sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
    sock.sndhwm, sock.linger = 0, 0
    monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
    try:
        sock.connect(f"tcp://127.0.0.1:{port}")
        if not monitor.poll(int(FLOOD_GIVE_UP * 1000)):
            return "no handshake"
        monitor.recv_multipart()
        sock.send_multipart([b"ab"] * (FLOOD_WIRE // CURVE_FRAME_WIRE))
        # Cut off: the daemon ends the connection. Otherwise it swallowed it all; give up after a while.
        return "cut" if monitor.poll(int(FLOOD_GIVE_UP * 1000)) else "not cut"
    finally:
        sock.disable_monitor()
        monitor.close(0)
        sock.close(0)
        ctx.term()


# -- the daemon -----------------------------------------------------------------------------


def daemon_rss(pid: int) -> int:
    """Resident memory of *pid* and every process below it."""
    total = 0
    with contextlib.suppress(psutil.NoSuchProcess):
        top = psutil.Process(pid)
        for process in [top, *top.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += process.memory_info().rss
    return total


def edge_pid(pid: int) -> int | None:
    """The running edge's pid."""
    for child in psutil.Process(pid).children():
        with contextlib.suppress(psutil.NoSuchProcess):
            if "ssd.edge" in " ".join(child.cmdline()):
                return child.pid
    return None


# -- measuring ---------------------------------------------------------------------------------


class Sampler(threading.Thread):
    """Samples the daemon's memory every 10 ms until stopped; keeps the peak; notes edge restarts."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.edges: set[int] = set()
        self._done = threading.Event()

    def run(self) -> None:
        """The thread."""
        while not self._done.wait(0.01):
            self.peak = max(self.peak, daemon_rss(self.pid))
            with contextlib.suppress(psutil.NoSuchProcess):
                if (edge := edge_pid(self.pid)) is not None:
                    self.edges.add(edge)

    def stop(self) -> None:
        """End sampling and wait."""
        self._done.set()
        self.join()


class Attackers(threading.Thread):
    """Runs attacker processes back to back (control, events, control, ...) until stopped."""

    def __init__(self, info: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.info = info
        self.outcomes: list[str] = []
        self._done = threading.Event()

    def run(self) -> None:
        """The thread."""
        targets = [("dealer", self.info["control_port"]), ("xsub", self.info["events_port"])]
        while not self._done.is_set():
            kind, port = targets[len(self.outcomes) % 2]
            argv = [sys.executable, __file__, "--flood", kind, str(port), self.info["public_key"]]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=FLOOD_GIVE_UP * 2, check=False)
            self.outcomes.append(done.stdout.strip() or f"failed: {done.stderr.strip()[-200:]}")

    def stop(self) -> None:
        """Let the current attacker finish, start no other, wait."""
        self._done.set()
        self.join()


def ping_phase(client: Client, pid: int, pings: int, attackers: Attackers | None) -> Phase:
    """*pings* lockstep pings while memory is sampled (and the attackers run, if any)."""
    sampler = Sampler(pid)
    sampler.start()
    if attackers is not None:
        attackers.start()
        while not attackers.outcomes and daemon_rss(pid) < sampler.peak + (1 << 20):  # until the first bites
            time.sleep(0.01)
    latencies: list[float] = []
    failed = 0
    for _ in range(pings):
        sent = time.perf_counter()
        try:
            client.ping("bench")
        except Exception:  # a timeout during the flood is what this measures
            failed += 1
            continue
        latencies.append(time.perf_counter() - sent)
    if attackers is not None:
        attackers.stop()
    sampler.stop()
    latencies.sort()
    return Phase(
        pings=len(latencies),
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[int(len(latencies) * 0.99)] * 1000,
        max_ms=latencies[-1] * 1000,
        peak_mib=sampler.peak / 2**20,
        floods=len(attackers.outcomes) if attackers is not None else 0,
        failed_pings=failed,
    )


def measure(pings: int) -> Report:
    """The whole run: one daemon, quiet then flooded."""
    with tempfile.TemporaryDirectory(prefix="ssd-bench-edge-") as name, harness.daemon(Path(name)) as daemon:
        tmp, process, info = Path(name), daemon.process, daemon.info
        client = Client(
            f"127.0.0.1:{daemon.control_port}",
            trust=True,
            identity=client_keypair(tmp / "client"),
            known_hosts=KnownHosts(tmp / "client" / "known_hosts"),
            timeout=10.0,
        )
        with client:  # connects
            for _ in range(200):  # warm up
                client.ping("bench")
            start = daemon_rss(process.pid)
            first_edge = edge_pid(process.pid)
            progress(f"quiet: {pings} pings")
            quiet = ping_phase(client, process.pid, pings, None)
            progress(f"flooded: {pings} pings while attackers send 60 MB of 2-byte frames each, back to back")
            attackers = Attackers(info)
            flooded = ping_phase(client, process.pid, pings, attackers)
            progress(f"attackers: {attackers.outcomes}")
            last_edge = edge_pid(process.pid)
        text = daemon.log.read_text(errors="replace")
    restarts = text.count("the edge exited")
    if restarts == 0 and first_edge != last_edge:
        restarts = 1
    return Report(
        environment={"python": platform.python_version(), "cpus": str(os.cpu_count()), "libzmq": zmq.zmq_version()},
        quiet=quiet,
        flooded=flooded,
        start_mib=start / 2**20,
        edge_restarts=restarts,
        guard_cuts=text.count("cut the connection"),
    )


def show(report: Report) -> None:
    """The table: quiet, flooded, ratio."""
    table = Table(title="another client's ping and the daemon's memory, during a flood before login")
    for column in ("", "no attack", "during the flood", "ratio"):
        table.add_column(column, justify="right" if column else "left")
    quiet, flooded = report.quiet, report.flooded
    for label, a, b in (
        ("ping p50 (ms)", quiet.p50_ms, flooded.p50_ms),
        ("ping p99 (ms)", quiet.p99_ms, flooded.p99_ms),
        ("ping max (ms)", quiet.max_ms, flooded.max_ms),
        ("daemon peak memory (MiB)", quiet.peak_mib, flooded.peak_mib),
    ):
        table.add_row(label, f"{a:.2f}", f"{b:.2f}", f"{b / a:.2f}x")
    table.add_row(
        "pings answered / failed",
        f"{quiet.pings} / {quiet.failed_pings}",
        f"{flooded.pings} / {flooded.failed_pings}",
        "",
    )
    Console().print(table)
    print(
        f"{flooded.floods} floods of 60 MB; the edge's guard cut {report.guard_cuts} connections; "
        f"the edge restarted {report.edge_restarts} times; daemon memory at start {report.start_mib:.1f} MiB"
    )


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer pings (noisier)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--flood", nargs=3, metavar=("KIND", "PORT", "KEY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.flood:
        kind, port, key = args.flood
        print(flood(int(port), kind, key.encode()), flush=True)
        return 0
    return harness.finish(
        "bench_edge",
        lambda: measure(1000 if args.quick else 5000),
        as_json=args.json,
        show=show,
        encode=lambda report: json.dumps(asdict(report), indent=2),
        failures=(RuntimeError, harness.BenchError),
    )


if __name__ == "__main__":
    sys.exit(main())

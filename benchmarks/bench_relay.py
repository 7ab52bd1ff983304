"""Kernel channels: direct vs ssd's CURVE relay vs the local tunnel, on one kernel, in one run.

Usage: ``python benchmarks/bench_relay.py [--runs N] [--mb N] [--kind ipykernel|spyder] [--source VENV] [--json]``

A daemon in user mode starts one kernel; it is then reached four ways at once:

- *direct*: the kernel's own endpoints, from its own connection file;
- *relay*: the connection info the daemon gives clients (the relay's ports and
  its CURVE keys), which jupyter_client 8.9+ connects to with CURVE; the
  worker's relay loop forwards (one thread for all its relays);
- *threaded*: the baseline, the relay as it was before that loop (libzmq's
  proxy in a thread per channel, ``benchmarks/threaded_relay.py``) in a
  process of its own, in front of the same kernel;
- *tunnel*: ``ssd.client.tunnel.Tunnel`` on that info, and a classic connection
  to its plain local ports.

Measured per path: the execute round trip of ``pass`` (send to execute_reply,
one BlockingKernelClient each, samples taken path after path so load falls on
all alike) and iopub throughput of a cell that prints N MB (execute to the
idle status after the last stream byte). The relay's cost is reported against
direct, and against the threaded baseline; see benchmarks/README.md for the targets.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import harness
import psutil
from harness import BenchError, progress
from relay_paths import PATHS, Settings, Tally, measure
from rich.console import Console
from rich.table import Table

from ssd.client import Client
from ssd.client.tunnel import Tunnel
from ssd.errors import SSDError
from ssd.replies import KernelStartReply

TARGET_ADDED_MS = 0.5  # the relay's execute round trip, minus direct's (p50)
TARGET_FRACTION = 0.70  # the relay's iopub throughput, as a fraction of direct's (medians)
START_TIMEOUT = 60.0  # kernel_start, the client's requests
TARGET_VS_THREADED = 1.3  # the relay's p50 round trip (and inverse throughput) against the threaded baseline's
THREADED = Path(__file__).with_name("threaded_relay.py")
ENV_NAME = "bench"


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
    vs_threaded: dict[str, float]  # the relay's p50 round trip and throughput, as ratios to the baseline's


# -- the kernel's environment, the daemon, the kernel ----------------------------------


@contextlib.contextmanager
def daemon(top: Path) -> Iterator[harness.Running]:
    """The daemon in user mode, finding TOP/envs; on the way out, stopped and any kernel it left killed."""
    try:
        with harness.daemon(
            top, new_session=True, SSD_ENVS_VENV_DIRS=str(top / "envs"), SSD_ENVS_KNOWN_ROOTS="false"
        ) as running:
            yield running
    finally:
        kill_leftover_kernels(top)


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


@contextlib.contextmanager
def threaded_relay(direct: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The baseline relay in its own process in front of the kernel; yields its connection info."""
    process = subprocess.Popen(
        [sys.executable, str(THREADED)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdin is not None
    assert process.stdout is not None
    timer = threading.Timer(START_TIMEOUT, process.kill)  # a baseline that never answers fails the run
    try:
        process.stdin.write(json.dumps(direct) + "\n")
        process.stdin.flush()
        timer.start()
        line = process.stdout.readline()
        timer.cancel()
        if not line:
            raise BenchError(f"the threaded baseline relay exited ({process.wait()}) without its connection info")
        yield json.loads(line)
    finally:
        timer.cancel()
        process.stdin.close()
        process.wait(20)
        process.stdout.close()


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


# -- the run ---------------------------------------------------------------------------


def run(settings: Settings, source: Path | None) -> Report:
    """Prepare, start the daemon and the kernel, measure, clean up (also on error or Ctrl-C)."""
    with tempfile.TemporaryDirectory(prefix="ssd-bench-relay-") as folder:
        top = Path(folder)
        harness.kernel_env(top, source)
        load_before = os.getloadavg()
        with (
            daemon(top) as running,
            harness.logged_in(top, running, timeout=START_TIMEOUT) as client,
            kernel(client, settings.kind) as reply,
        ):
            direct, relay = connection_infos(client, reply)
            with tunnel(relay) as local, threaded_relay(direct) as threaded:
                infos = {"direct": direct, "relay": relay, "threaded": threaded, "tunnel": local}
                tallies = measure(infos, settings)
        load_after = os.getloadavg()
    paths = [summarize(name, tallies[name]) for name in PATHS]
    return Report(settings, environment(), load_before, load_after, paths, compare(paths), against_threaded(paths))


def against_threaded(paths: Sequence[PathResult]) -> dict[str, float]:
    """The relay against the threaded baseline: round trip p50 and throughput, as ratios (1.0: the same)."""
    by_name = {path.name: path for path in paths}
    relay, threaded = by_name["relay"], by_name["threaded"]
    return {"p50": relay.p50_ms / threaded.p50_ms, "throughput": relay.mb_per_s / threaded.mb_per_s}


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

    return [
        against("relay", TARGET_ADDED_MS, TARGET_FRACTION),
        against("threaded", None, None),
        against("tunnel", None, None),
    ]


def environment() -> dict[str, str]:
    """What the numbers depend on."""
    return {**harness.versions(), "jupyter_client": version("jupyter_client")}


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
    vs = report.vs_threaded
    console.print(
        f"relay loop vs threaded baseline: round trip p50 x{vs['p50']:.2f}, throughput x{vs['throughput']:.2f} "
        f"(target: round trip at most x{TARGET_VS_THREADED}, throughput at least x{1 / TARGET_VS_THREADED:.2f})",
        highlight=False,
    )
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

"""Broker overhead: the ssd daemon against a bare pyzmq CURVE echo server, in one run.

Usage: ``python benchmarks/bench_broker.py [--quick] [--json]``

Each server runs in its own process. One asyncio DEALER client code path
(broker_load.py) drives both with pre-serialized Jupyter frames and waits for
one reply message per request, so the ssd/raw ratios show what the broker adds
on top of ZeroMQ and CURVE. Both servers run for the whole measurement, which
is split in rounds that visit every row in turn, so that load from elsewhere on
the machine falls on the baseline and on ssd alike. See benchmarks/README.md
for what each row means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import harness
import zmq
import zmq.asyncio
from broker_load import SSD_CLIENT, Login, Row, Server, Settings, Workload, measure, ok_status, serialized
from harness import BenchError, progress
from rich.console import Console
from rich.table import Table
from zmq.auth.asyncio import AsyncioAuthenticator

from ssd.errors import SSDError
from ssd.files import write_atomic
from ssd.protocol import Wire

RAW_ZAP_DOMAIN = "bench"
RAW = "raw CURVE echo (pyzmq)"
SSD_PING = "ssd ping (in broker)"
SSD_ECHO = "ssd echo (diag worker)"

FULL = Settings(round_trips=2000, clients=32, depth=8, total=20000, warmup=500, rounds=4)
QUICK = Settings(round_trips=300, clients=32, depth=8, total=3000, warmup=100, rounds=2)


@dataclass(frozen=True)
class Ratio:
    """An ssd/raw ratio and its target."""

    name: str
    value: float
    target: float
    at_most: bool  # the target is an upper bound (latency), else a lower bound (throughput)

    @property
    def met(self) -> bool:
        """Whether the value is on the right side of the target."""
        return self.value <= self.target if self.at_most else self.value >= self.target


@dataclass(frozen=True)
class Report:
    """Everything one run measured."""

    settings: Settings
    environment: dict[str, str]
    rows: list[Row]
    ratios: list[Ratio]
    client_overhead_us: float  # ssd.client.Client p50 minus the raw-socket ssd ping p50


# -- the baseline server (runs in a child process) -------------------------------------


class AnyCurveKey:
    """ZAP policy of the baseline: any CURVE key may connect, as in ssd's client domain."""

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP callback (pyzmq's Authenticator calls it with the Z85 key)."""
        return domain == RAW_ZAP_DOMAIN


async def serve_raw_echo(info_path: Path) -> None:
    """Child process: echo every multipart message on a CURVE ROUTER until SIGTERM."""
    ctx = zmq.asyncio.Context()
    auth = AsyncioAuthenticator(ctx)
    auth.start()  # before bind, as in ssd: without a ZAP handler libzmq admits every key
    auth.configure_curve_callback(RAW_ZAP_DOMAIN, AnyCurveKey())
    public, secret = zmq.curve_keypair()
    sock = ctx.socket(zmq.ROUTER)
    sock.linger = 200
    sock.maxmsgsize = 1 << 20
    sock.curve_server = True
    sock.curve_secretkey = secret
    sock.zap_domain = RAW_ZAP_DOMAIN.encode()
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    info = {"control_port": port, "public_key": public.decode(), "pid": os.getpid()}
    write_atomic(info_path, json.dumps(info))  # whole, so the parent never reads half a file
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    echo = asyncio.create_task(echo_forever(sock))
    await stop.wait()
    echo.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await echo
    auth.stop()
    ctx.destroy(linger=0)


async def echo_forever(sock: zmq.asyncio.Socket) -> None:
    """Send each message back as received (routing id first, so to its sender)."""
    while True:
        frames = await sock.recv_multipart(copy=False)
        sock.send_multipart(frames, copy=False)  # ROUTER sends do not block, as in ssd


# -- the servers ---------------------------------------------------------------------------


@contextlib.contextmanager
def raw_echo_server(tmp: Path) -> Iterator[Server]:
    """The baseline: this script in --serve-raw-echo mode."""
    info = tmp / "raw-echo.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--serve-raw-echo", str(info)]
    with harness.server_process(RAW, command, harness.clean_env(), tmp / "raw-echo.log", info) as running:
        yield Server(RAW, running.control_port, str(running.info["public_key"]).encode())


@contextlib.contextmanager
def ssd_daemon(tmp: Path) -> Iterator[Server]:
    """The real daemon with the diagnostic worker, on random loopback ports."""
    with harness.daemon(tmp, SSD_WORKERS_DIAG="true") as running:
        yield Server("ssd daemon", running.control_port, str(running.info["public_key"]).encode())


# -- the run ---------------------------------------------------------------------------


def run(settings: Settings) -> Report:
    """Start both servers, measure every row, stop the servers (also on error)."""
    count = max(settings.round_trips // settings.rounds, settings.total // settings.rounds, settings.warmup * 4)
    progress(f"serializing {2 * count} requests")
    wire = Wire(username="bench")
    pings, echoes = serialized(wire, "ping_request", count), serialized(wire, "echo_request", count)
    sent_content = pings[0][-1]
    with tempfile.TemporaryDirectory(prefix="ssd-bench-") as tmp_name, contextlib.ExitStack() as servers:
        tmp = Path(tmp_name)
        raw = servers.enter_context(raw_echo_server(tmp))
        daemon = servers.enter_context(ssd_daemon(tmp))
        # echo_request needs a login: the daemon (user mode) lets its own user log in with an authorized key.
        login = Login(tmp, harness.current_user())
        plan = [
            (raw, [Workload(RAW, pings, lambda content: content == sent_content)]),
            (daemon, [Workload(SSD_PING, pings, ok_status), Workload(SSD_ECHO, echoes, ok_status, login)]),
        ]
        rows = asyncio.run(measure(plan, daemon, tmp / "client", settings))
    return report(settings, rows)


def report(settings: Settings, rows: list[Row]) -> Report:
    """Compute the ssd/raw ratios from the measured rows."""
    by_name = {row.name: row for row in rows}
    raw, ping, echo = by_name[RAW], by_name[SSD_PING], by_name[SSD_ECHO]
    ratios = [
        Ratio("ping p50 latency", ping.p50_us / raw.p50_us, 1.5, at_most=True),
        Ratio("in-broker throughput", rate(ping) / rate(raw), 0.5, at_most=False),
        Ratio("worker-routed throughput", rate(echo) / rate(raw), 0.25, at_most=False),
    ]
    overhead = by_name[SSD_CLIENT].p50_us - ping.p50_us
    return Report(settings, harness.versions(), rows, ratios, overhead)


def rate(row: Row) -> float:
    """The row's throughput, which every raw-socket row has."""
    if row.requests_per_s is None:
        raise BenchError(f"{row.name}: no throughput measured")
    return row.requests_per_s


def as_json(result: Report) -> str:
    """The report as one JSON document."""
    document = asdict(result)
    document["ratios"] = [{**asdict(ratio), "met": ratio.met} for ratio in result.ratios]
    document["all_targets_met"] = all(ratio.met for ratio in result.ratios)
    return json.dumps(document, indent=2)


def print_tables(result: Report) -> None:
    """The rows and ratios as terminal tables."""
    console = Console()
    s, env = result.settings, result.environment
    console.print(
        f"latency: 1 client in lockstep, {s.round_trips} round trips\n"
        f"throughput: {s.clients} clients x {s.depth} in flight, {s.total} requests\n"
        f"measured in {s.rounds} rounds, each visiting every row in turn",
        highlight=False,
    )
    table = Table("measurement", "p50 µs", "p99 µs", "req/s", "req/s by round")
    for column in table.columns[1:]:
        column.justify = "right"
    for row in result.rows:
        rate = "-" if row.requests_per_s is None else f"{row.requests_per_s:,.0f}"
        spread = "-" if not row.round_rates else f"{min(row.round_rates):,.0f}-{max(row.round_rates):,.0f}"
        table.add_row(row.name, f"{row.p50_us:,.0f}", f"{row.p99_us:,.0f}", rate, spread)
    console.print(table)
    ratios = Table("ssd / raw", "value", "target", "result")
    for column in ratios.columns[1:]:
        column.justify = "right"
    for ratio in result.ratios:
        verdict = "[green]met[/]" if ratio.met else "[red]missed[/]"
        ratios.add_row(ratio.name, f"{ratio.value:.2f}x", f"{'<=' if ratio.at_most else '>='} {ratio.target}x", verdict)
    console.print(ratios)
    console.print(
        f"ssd.client.Client ping p50 minus raw-socket ssd ping p50: {result.client_overhead_us:+,.0f} µs\n"
        f"python {env['python']}, pyzmq {env['pyzmq']}, libzmq {env['libzmq']}, {env['cpus']} CPUs",
        highlight=False,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the benchmark, print the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run, noisier numbers)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON document")
    parser.add_argument("--serve-raw-echo", type=Path, metavar="INFO", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_raw_echo is not None:
        asyncio.run(serve_raw_echo(args.serve_raw_echo))
        return 0
    # SSDError: the ssd.client.Client row failed
    return harness.finish(
        "bench_broker",
        lambda: run(QUICK if args.quick else FULL),
        as_json=args.json,
        show=print_tables,
        encode=as_json,
        failures=(BenchError, SSDError),
    )


if __name__ == "__main__":
    sys.exit(main())

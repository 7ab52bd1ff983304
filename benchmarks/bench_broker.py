"""Broker overhead: the ssd daemon against a bare pyzmq CURVE echo server, in one run.

Usage: ``python benchmarks/bench_broker.py [--quick] [--json]``

Each server runs in its own process. One asyncio DEALER client code path drives
both with pre-serialized Jupyter frames and waits for one reply message per
request, so the ssd/raw ratios show what the broker adds on top of ZeroMQ and
CURVE. Both servers run for the whole measurement, which is split in rounds that
visit every row in turn, so that load from elsewhere on the machine falls on
the baseline and on ssd alike. See benchmarks/README.md for what each row means.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import itertools
import json
import os
import platform
import pwd
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from rich.console import Console
from rich.table import Table
from zmq.auth.asyncio import AsyncioAuthenticator

from ssd.client import Client, KnownHosts
from ssd.client.identity import client_keypair
from ssd.errors import SSDError
from ssd.protocol import Wire

Frames = list[bytes]
Check = Callable[[bytes], bool]

START_TIMEOUT = 30.0  # seconds for a server to write its info file
PHASE_TIMEOUT = 120.0  # seconds for one step of one row; a lost reply fails the run
STOP_TIMEOUT = 10.0  # seconds a server gets to exit after SIGTERM before it is killed
RAW_ZAP_DOMAIN = "bench"
DATA = "ssd-bench"

RAW = "raw CURVE echo (pyzmq)"
SSD_PING = "ssd ping (in broker)"
SSD_ECHO = "ssd echo (diag worker)"
SSD_CLIENT = "ssd.client.Client ping (sync)"
LOGIN_WIRE = Wire(username="bench")


@dataclass(frozen=True)
class Settings:
    """How much to measure."""

    round_trips: int  # lockstep round trips of one client
    clients: int  # concurrent clients, each with its own socket and keypair
    depth: int  # requests each concurrent client keeps in flight
    total: int  # requests sent by all concurrent clients together
    warmup: int  # lockstep requests sent, unmeasured, before the first round (x4 concurrent)
    rounds: int  # the measurement is split into this many interleaved rounds


FULL = Settings(round_trips=2000, clients=32, depth=8, total=20000, warmup=500, rounds=4)
QUICK = Settings(round_trips=300, clients=32, depth=8, total=3000, warmup=100, rounds=2)


@dataclass(frozen=True)
class Server:
    """A running server: where its control socket is and its CURVE public key."""

    name: str
    port: int
    public_key: bytes

    @property
    def endpoint(self) -> str:
        """The ZeroMQ endpoint of the control socket."""
        return f"tcp://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class Login:
    """How a client key gets a login on the daemon: an administrator-authorized key for *user*."""

    authorized_keys: Path  # CONFIG_DIR/authorized_keys.d/USER on the daemon
    user: str


@dataclass(frozen=True)
class Workload:
    """One request kind: its pre-serialized requests and how to tell a good reply."""

    name: str
    requests: list[Frames]
    check: Check  # called with the last frame (content) of each reply
    login: Login | None = None  # every client logs in first (requests that need a login)


@dataclass(frozen=True)
class Row:
    """One line of the result table."""

    name: str
    p50_us: float
    p99_us: float
    requests_per_s: float | None  # all requests / all seconds; None when not measured
    round_rates: tuple[float, ...]  # requests/s of each round, to show the spread


@dataclass
class Tally:
    """What the rounds measured so far for one row."""

    latencies_ns: list[int] = field(default_factory=list)
    requests: int = 0
    seconds: float = 0.0
    round_rates: list[float] = field(default_factory=list)

    def add_throughput(self, requests: int, seconds: float) -> None:
        """Count one round of concurrent requests."""
        self.requests += requests
        self.seconds += seconds
        self.round_rates.append(requests / seconds)

    def row(self, name: str) -> Row:
        """Summarize: latency percentiles over all rounds, throughput over all rounds."""
        p50, p99 = percentiles_us(self.latencies_ns)
        rate = self.requests / self.seconds if self.seconds else None
        return Row(name, p50, p99, rate, tuple(self.round_rates))


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


class BenchError(Exception):
    """A server failed to start or answered wrongly; the run is void."""


def progress(message: str) -> None:
    """Say what the run is doing, on stderr so that --json output stays clean."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


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
    write_json(info_path, {"control_port": port, "public_key": public.decode(), "pid": os.getpid()})
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


def write_json(path: Path, info: dict[str, Any]) -> None:
    """Write *info* atomically, so the parent never reads half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(path)


# -- server processes ------------------------------------------------------------------


@contextlib.contextmanager
def server_process(
    name: str, command: list[str], env: dict[str, str], log_path: Path, info_path: Path
) -> Iterator[Server]:
    """Start a server, wait for its info file, yield it; SIGTERM and wait on the way out."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    started = False
    try:
        info = wait_for_info(name, process, info_path, log_path)
        started = True
        yield Server(name, int(info["control_port"]), str(info["public_key"]).encode())
    finally:
        stop_process(name, process, log_path, started=started)


def wait_for_info(name: str, process: subprocess.Popen[bytes], info_path: Path, log_path: Path) -> dict[str, Any]:
    """Return the server's info file once written; fail if it exits or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{name} exited with {process.returncode}:\n{tail(log_path)}")
        if info_path.exists():
            info: dict[str, Any] = json.loads(info_path.read_text())
            return info
        time.sleep(0.02)
    raise BenchError(f"{name} wrote no {info_path.name} within {START_TIMEOUT:g}s:\n{tail(log_path)}")


def stop_process(name: str, process: subprocess.Popen[bytes], log_path: Path, *, started: bool) -> None:
    """SIGTERM *process* and wait; kill it if it does not stop in time; report an unclean exit."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    elif not started:
        return  # wait_for_info already reported the failed start, with the log
    try:
        code = process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        progress(f"{name} did not stop within {STOP_TIMEOUT:g}s of SIGTERM; killed")
        return
    if code != 0:
        progress(f"{name} exited with {code}:\n{tail(log_path)}")


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a server's log."""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the caller's SSD_* settings, plus *extra*."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("SSD_")}, **extra}


def raw_echo_server(tmp: Path) -> contextlib.AbstractContextManager[Server]:
    """The baseline: this script in --serve-raw-echo mode."""
    info = tmp / "raw-echo.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--serve-raw-echo", str(info)]
    return server_process(RAW, command, clean_env(), tmp / "raw-echo.log", info)


def ssd_config_dir(tmp: Path) -> Path:
    """The daemon's SSD_CONFIG_DIR (where the administrator's authorized keys are)."""
    return tmp / "ssd-config"


def ssd_daemon(tmp: Path) -> contextlib.AbstractContextManager[Server]:
    """The real daemon with the diagnostic worker, on random loopback ports."""
    state = tmp / "ssd-state"
    env = clean_env(SSD_CONFIG_DIR=str(ssd_config_dir(tmp)), SSD_STATE_DIR=str(state), SSD_WORKERS_DIAG="true")
    command = [sys.executable, "-m", "ssd", "--bind", "127.0.0.1", "--port", "0", "--no-announce"]
    return server_process("ssd daemon", command, env, tmp / "ssd.log", state / "daemon.json")


# -- the client side: one code path for both servers -----------------------------------


def dealer(ctx: zmq.asyncio.Context, server: Server, login: Login | None = None) -> zmq.asyncio.Socket:
    """A DEALER CURVE client socket with a keypair of its own, connected to *server*.

    With *login*, its public key is first listed in the daemon's authorized keys for the user.
    """
    public, secret = zmq.curve_keypair()
    if login is not None:
        authorize(login, public)
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.curve_serverkey = server.public_key
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    sock.connect(server.endpoint)
    return sock


def authorize(login: Login, public_key: bytes) -> None:
    """Append *public_key* to the administrator's authorized keys of the login's user (0700 dir, 0600 file)."""
    login.authorized_keys.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(login.authorized_keys, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as fh:
        fh.write(public_key + b"\n")


async def log_in(sock: zmq.asyncio.Socket, login: Login) -> None:
    """Bind the socket's (authorized) key to the user with a login_request; fail the run unless ok."""
    _, frames = LOGIN_WIRE.serialize("login_request", {"username": login.user})
    await sock.send_multipart(frames)
    content = (await sock.recv_multipart())[-1]
    if not ok_status(content):
        raise BenchError(f"login as {login.user} refused: {content[:200]!r}")


async def wait_ready(sock: zmq.asyncio.Socket, workload: Workload) -> None:
    """Retry one request until a good reply: the handshake is done and a worker is registered."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        await sock.send_multipart(workload.requests[0])
        content = (await sock.recv_multipart())[-1]
        if workload.check(content):
            return
        if time.monotonic() > deadline:
            raise BenchError(f"{workload.name}: no good reply within {START_TIMEOUT:g}s; last: {content[:200]!r}")
        await asyncio.sleep(0.1)


async def lockstep(sock: zmq.asyncio.Socket, requests: Sequence[Frames]) -> tuple[list[int], list[bytes]]:
    """Send each request after the previous reply; return round-trip times (ns) and reply contents."""
    samples: list[int] = []
    replies: list[bytes] = []
    clock = time.perf_counter_ns
    for frames in requests:
        start = clock()
        await sock.send_multipart(frames)
        reply = await sock.recv_multipart()
        samples.append(clock() - start)
        replies.append(reply[-1])
    return samples, replies


async def keep_in_flight(sock: zmq.asyncio.Socket, requests: Sequence[Frames], depth: int) -> list[bytes]:
    """Pipeline: keep *depth* requests outstanding, send the next on each reply."""
    replies: list[bytes] = []
    queue = iter(requests)
    in_flight = 0
    for frames in itertools.islice(queue, depth):
        await sock.send_multipart(frames)
        in_flight += 1
    while in_flight:
        replies.append((await sock.recv_multipart())[-1])
        in_flight -= 1
        if (following := next(queue, None)) is not None:
            await sock.send_multipart(following)
            in_flight += 1
    return replies


async def pipelined(
    socks: Sequence[zmq.asyncio.Socket], requests: Sequence[Frames], depth: int
) -> tuple[float, list[bytes]]:
    """Share *requests* among the sockets, pipelined; return the seconds taken and reply contents."""
    shares = [requests[i :: len(socks)] for i in range(len(socks))]
    start = time.perf_counter()
    parts = await asyncio.gather(*(keep_in_flight(s, share, depth) for s, share in zip(socks, shares, strict=True)))
    return time.perf_counter() - start, [reply for part in parts for reply in part]


def verify(workload: Workload, replies: Sequence[bytes], expected: int) -> None:
    """Fail the run unless every request got a good reply."""
    if len(replies) != expected:
        raise BenchError(f"{workload.name}: {len(replies)} replies to {expected} requests")
    bad = [reply for reply in replies if not workload.check(reply)]
    if bad:
        raise BenchError(f"{workload.name}: {len(bad)} bad replies; first: {bad[0][:200]!r}")


class SocketTarget:
    """One workload on one server, driven by raw DEALER sockets; measured a slice per round."""

    def __init__(self, ctx: zmq.asyncio.Context, server: Server, workload: Workload, settings: Settings) -> None:
        self.workload = workload
        self.settings = settings
        self.socks = [dealer(ctx, server, workload.login) for _ in range(settings.clients)]
        self.tally = Tally()

    async def warm_up(self) -> None:
        """Log every client in if needed, complete every handshake, then run unmeasured traffic."""
        if self.workload.login is not None:
            progress(f"logging in {len(self.socks)} clients of {self.workload.name}")
            for sock in self.socks:  # one at a time: the daemon lets one login per user name run at once
                await log_in(sock, self.workload.login)
        await asyncio.gather(*(wait_ready(sock, self.workload) for sock in self.socks))
        await lockstep(self.socks[0], self.workload.requests[: self.settings.warmup])
        await pipelined(self.socks, self.workload.requests[: self.settings.warmup * 4], self.settings.depth)

    async def measure_round(self) -> None:
        """Lockstep latency on the first socket, then throughput on all of them."""
        count = self.settings.round_trips // self.settings.rounds
        samples, replies = await lockstep(self.socks[0], self.workload.requests[:count])
        verify(self.workload, replies, count)
        self.tally.latencies_ns += samples
        count = self.settings.total // self.settings.rounds
        seconds, replies = await pipelined(self.socks, self.workload.requests[:count], self.settings.depth)
        verify(self.workload, replies, count)
        self.tally.add_throughput(count, seconds)

    def row(self) -> Row:
        """This target's line of the table."""
        return self.tally.row(self.workload.name)


class ClientTarget:
    """Lockstep ping through the public sync client, in a thread of its own.

    ``Client`` runs a private event loop, which cannot run inside the loop
    driving the raw sockets; a one-thread executor keeps it on one thread
    while its rounds still interleave with the others.
    """

    def __init__(self, server: Server, client_dir: Path, settings: Settings) -> None:
        self.host = f"127.0.0.1:{server.port}"
        self.client_dir = client_dir
        self.settings = settings
        self.tally = Tally()
        self._client: Client | None = None
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-client")

    async def _call(self, function: Callable[[], None]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, function)

    async def warm_up(self) -> None:
        """Connect (trusting the daemon's key into a temporary known_hosts) and ping a while."""
        await self._call(self._connect)
        await self._call(lambda: self._pings(self.settings.warmup))

    async def measure_round(self) -> None:
        """One round's share of timed pings."""
        await self._call(lambda: self._pings(self.settings.round_trips // self.settings.rounds))

    async def close(self) -> None:
        """Close the client on its thread, then stop the thread."""
        await self._call(self._close)
        self._thread.shutdown()

    def _connect(self) -> None:
        identity = client_keypair(self.client_dir)
        known_hosts = KnownHosts(self.client_dir / "known_hosts")
        self._client = Client(self.host, trust=True, identity=identity, known_hosts=known_hosts)
        self._client.connect()

    def _pings(self, count: int) -> None:
        assert self._client is not None
        clock = time.perf_counter_ns
        for _ in range(count):
            start = clock()
            self._client.ping(DATA)  # raises on an error reply
            self.tally.latencies_ns.append(clock() - start)

    def _close(self) -> None:
        if self._client is not None:
            self._client.close()

    def row(self) -> Row:
        """This target's line of the table (latency only)."""
        return self.tally.row(SSD_CLIENT)


async def measure(
    plan: Sequence[tuple[Server, Sequence[Workload]]], daemon: Server, client_dir: Path, settings: Settings
) -> list[Row]:
    """Warm every row up, then measure them in interleaved rounds so that drift hits all alike."""
    ctx = zmq.asyncio.Context()
    library = ClientTarget(daemon, client_dir, settings)
    try:
        targets = [SocketTarget(ctx, server, w, settings) for server, workloads in plan for w in workloads]
        for target in targets:
            progress(f"warming up {target.workload.name}")
            await step(target.workload.name, target.warm_up())
        progress(f"warming up {SSD_CLIENT}")
        await library.warm_up()
        for number in range(1, settings.rounds + 1):
            progress(f"round {number} of {settings.rounds}")
            for target in targets:
                await step(target.workload.name, target.measure_round())
            await library.measure_round()
        return [target.row() for target in targets] + [library.row()]
    finally:
        await library.close()
        ctx.destroy(linger=0)


async def step(name: str, work: Awaitable[None]) -> None:
    """Await one step of one row; a stuck server fails the run instead of hanging it."""
    try:
        async with asyncio.timeout(PHASE_TIMEOUT):
            await work
    except TimeoutError:
        raise BenchError(f"{name}: no reply within {PHASE_TIMEOUT:g}s (a lost reply or a stuck server)") from None


def percentiles_us(samples_ns: Sequence[int]) -> tuple[float, float]:
    """p50 and p99 of round-trip times, in microseconds."""
    cuts = statistics.quantiles(samples_ns, n=100, method="inclusive")
    return cuts[49] / 1000, cuts[98] / 1000


# -- the run ---------------------------------------------------------------------------


def serialized(wire: Wire, msg_type: str, count: int) -> list[Frames]:
    """*count* distinct messages (own msg_id each), serialized before any timing starts."""
    return [wire.serialize(msg_type, {"data": DATA})[1] for _ in range(count)]


def ok_status(content: bytes) -> bool:
    """An ssd reply content that says ``status: ok``."""
    return bool(json.loads(content).get("status") == "ok")


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
        user = pwd.getpwuid(os.geteuid()).pw_name
        login = Login(ssd_config_dir(tmp) / "authorized_keys.d" / user, user)
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
    return Report(settings, environment(), rows, ratios, overhead)


def rate(row: Row) -> float:
    """The row's throughput, which every raw-socket row has."""
    if row.requests_per_s is None:
        raise BenchError(f"{row.name}: no throughput measured")
    return row.requests_per_s


def environment() -> dict[str, str]:
    """What the numbers depend on: versions and CPUs."""
    return {
        "python": platform.python_version(),
        "pyzmq": zmq.pyzmq_version(),
        "libzmq": zmq.zmq_version(),
        "cpus": str(os.cpu_count()),
        "platform": platform.platform(),
    }


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
    try:
        result = run(QUICK if args.quick else FULL)
    except (BenchError, SSDError) as exc:  # SSDError: the ssd.client.Client row failed
        print(f"bench_broker: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench_broker: interrupted; servers stopped", file=sys.stderr)
        return 130
    if args.json:
        print(as_json(result))
    else:
        print_tables(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

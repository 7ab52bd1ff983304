"""The client side of bench_broker: DEALER sockets and the sync client driving a server, measured in rounds.

One code path drives the raw echo server and the daemon alike (see bench_broker.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.asyncio
from harness import BenchError, authorize, progress

from ssd.client import Client, KnownHosts
from ssd.client.identity import client_keypair
from ssd.protocol import Wire

Frames = list[bytes]
Check = Callable[[bytes], bool]

START_TIMEOUT = 30.0  # seconds for a server's first good reply
PHASE_TIMEOUT = 120.0  # seconds for one step of one row; a lost reply fails the run
DATA = "ssd-bench"
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

    top: Path  # the daemon's folder (harness.daemon), whose config holds the authorized keys
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


def dealer(ctx: zmq.asyncio.Context, server: Server, login: Login | None = None) -> zmq.asyncio.Socket:
    """A DEALER CURVE client socket with a keypair of its own, connected to *server*.

    With *login*, its public key is first listed in the daemon's authorized keys for the user.
    """
    public, secret = zmq.curve_keypair()
    if login is not None:
        authorize(login.top, login.user, public)
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.curve_serverkey = server.public_key
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    sock.connect(server.endpoint)
    return sock


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


def serialized(wire: Wire, msg_type: str, count: int) -> list[Frames]:
    """*count* distinct messages (own msg_id each), serialized before any timing starts."""
    return [wire.serialize(msg_type, {"data": DATA})[1] for _ in range(count)]


def ok_status(content: bytes) -> bool:
    """An ssd reply content that says ``status: ok``."""
    return bool(json.loads(content).get("status") == "ok")

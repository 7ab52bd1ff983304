"""The kernel side of bench_relay: one kernel reached by several paths, round trips and iopub transfers.

See bench_relay.py for what is measured and why.
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from harness import BenchError, progress
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.connect import KernelConnectionInfo

PATHS = ("direct", "relay", "threaded", "tunnel")
ROUND_TRIPS_PER_RUN = 100  # per path and run: --runs 2 or more gives at least 200 samples
WARMUP_ROUND_TRIPS = 50
START_TIMEOUT = 60.0  # a client's first kernel_info
MESSAGE_TIMEOUT = 60.0  # the longest wait for any one reply or iopub message


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

"""Scale: one system-mode daemon, N real users, K kernels (Jupyter and Spyder mixed), measured in one run.

Run as root with the project's environment::

    python benchmarks/bench_scale.py [--users 20] [--kernels 100] [--heavy 60] [--churn SECONDS] [--quick] [--json]

One user (the heavy one) gets ``--heavy`` kernels, the others share the rest. The kernels are started in
steps (a quarter of each user's share at a time); at every step every kernel runs ``1+1`` through its CURVE
relay, and /proc gives each kernel worker's threads, descriptors and RSS, and the broker's and the edge's;
``ping`` and the heavy user's ``kernel_list`` are timed against the same daemon with no kernel (ratios).
The per-kernel cost in a worker is the least-squares slope over every (worker, step). The relay's share is
measured apart: relays opened in this process on one of the kernels (ssd.kernels.relay, as the worker opens
them), and opened until libzmq refuses one (its per-context socket limit). Then 30 starts at once from 10
users (each succeeds or is refused ``limit_reached`` exactly as the limits say; no worker lost) and a churn
(kernels started, run and stopped for ``--churn`` seconds) with every process sampled before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "envs"), str(ROOT / "tests" / "kernels")]

from scale.procusage import soft_nofile, unit_nofile, usage  # noqa: E402
from scale.scalehost import (  # noqa: E402 (the tests' folders are put on sys.path above)
    Kernel,
    ScaleHost,
    Usage,
    burst_starts,
    execute,
    relay_share,
    scale_host,
)
from threaded_relay import ThreadedRelay  # noqa: E402

from ssd.errors import RemoteError  # noqa: E402
from ssd.replies import KernelStartReply  # noqa: E402

MIB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """What to run."""

    users: int
    kernels: int
    heavy: int
    churn: float  # seconds
    pings: int
    lists: int
    steps: tuple[float, ...]
    burst_users: int = 10
    burst_starts: int = 30

    def shares(self) -> list[int]:
        """Kernels per user: the heavy user first, the rest spread evenly over the others."""
        rest, others = self.kernels - self.heavy, self.users - 1
        return [self.heavy] + [rest // others + (1 if n < rest % others else 0) for n in range(others)]


def progress(message: str) -> None:
    """Say what the run does, on stderr (stdout stays clean for --json)."""
    print(f"[bench_scale] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(call: Callable[[], object], count: int) -> list[float]:
    """Milliseconds of *count* calls in lockstep."""
    times = []
    for _ in range(count):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
    return times


def latency(host: ScaleHost, s: Settings) -> dict[str, float]:
    """ping p50/p99 (answered by the broker) and the heavy user's kernel_list p50/max, in ms."""
    heavy, other = host.members[0].client, host.members[-1].client
    pings = timed(other.ping, s.pings)
    lists = timed(heavy.kernel_list, s.lists)
    return {
        "ping_p50": statistics.median(pings),
        "ping_p99": percentile(pings, 0.99),
        "list_p50": statistics.median(lists),
        "list_max": max(lists),
    }


def grow(host: ScaleHost, s: Settings) -> list[dict[str, Any]]:
    """The empty point, then the kernels started step by step; each step checked and measured."""
    host.members[0].client.kernel_list()  # untimed: the first request of a user may spawn workers
    points = [{"kernels": 0, "latency": latency(host, s), "usage": host.sample(), "workers": []}]
    for step in s.steps:
        for member, share in zip(host.members, s.shares(), strict=True):
            while len(member.kernels) < round(share * step):
                host.start(member)
        total = host.execute_all()
        progress(f"{total} kernels, all ran 1+1 through their relay")
        sample = host.sample()
        workers = [(len(m.kernels), asdict(sample[f"worker {m.user.name}"])) for m in host.members if m.worker]
        points.append({"kernels": total, "latency": latency(host, s), "usage": sample, "workers": workers})
    return points


def slopes(points: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Per-kernel cost in a worker: (slope, intercept) of threads, fds (and each kind) and RSS over kernels."""
    pairs = [(n, u) for point in points for n, u in point["workers"]]
    xs = [float(n) for n, _ in pairs]
    keys = {key for _, u in pairs for key in u["fd_kinds"]}
    series = {"threads": [u["threads"] for _, u in pairs], "fds": [u["fds"] for _, u in pairs]}
    series["rss_mib"] = [u["rss"] / MIB for _, u in pairs]
    series.update({f"fds {k}": [u["fd_kinds"].get(k, 0) for _, u in pairs] for k in sorted(keys)})
    fits = {}
    for name, ys in series.items():
        fit = statistics.linear_regression(xs, [float(y) for y in ys])
        fits[name] = (fit.slope, fit.intercept)
    return fits


def burst(host: ScaleHost, s: Settings, per_user: int, per_host: int) -> dict[str, Any]:
    """30 starts at once from 10 users (or as many as there are), with no kernel running before."""
    host.stop_all()
    users = min(s.burst_users, len(host.members))
    plan = [s.burst_starts // users + (1 if n < s.burst_starts % users else 0) for n in range(users)]
    expected = min(sum(min(count, per_user) for count in plan), per_host)
    began = time.perf_counter()
    results = burst_starts(host, plan)
    seconds = time.perf_counter() - began
    owners = [member for member, count in zip(host.members, plan, strict=False) for _ in range(count)]
    ok = [(member, r) for member, r in zip(owners, results, strict=True) if isinstance(r, KernelStartReply)]
    refused = [r for r in results if isinstance(r, RemoteError) and r.code == "limit_reached"]
    other = [repr(r) for r in results if not isinstance(r, KernelStartReply) and r not in refused]
    for member, reply in ok:
        kernel = Kernel(reply.kernel.kernel_id, "", member.client.connection_info(reply.connection), "")
        member.kernels.append(kernel)
        execute(kernel.relay)
    outcome: dict[str, Any] = {"starts": len(results), "users": users, "ok": len(ok), "limit_reached": len(refused)}
    outcome.update({"expected_ok": expected, "other_errors": other, "seconds": seconds})
    outcome["workers_lost"] = host.lost_workers()
    for member in host.members:  # a start whose reply was lost may still have left a kernel: stop it too
        known = {kernel.kernel_id for kernel in member.kernels}
        listed = [entry.kernel_id for entry in member.client.kernel_list()]
        member.kernels.extend(Kernel(kid, "", {}, "") for kid in listed if kid not in known)
    host.stop_all()
    return outcome


def settle(pid: int, before: Usage, timeout: float = 20.0) -> Usage:
    """*pid*'s usage once its threads and descriptors are back to *before* (libzmq's reaper closes sockets
    after the call that closed them returns), or as they are after *timeout*: what stays is a leak."""
    deadline = time.monotonic() + timeout
    while True:
        now = usage(pid)
        if (now.fds <= before.fds and now.threads <= before.threads) or time.monotonic() > deadline:
            return now
        time.sleep(0.1)


def churn(host: ScaleHost, seconds: float) -> dict[str, Any]:
    """Kernels started, run and stopped for *seconds*, with every process sampled before and after."""
    host.churn_round()  # warm-up: what a first start allocates for good is not a leak
    before = host.sample()
    starts, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        starts += host.churn_round()
    after = {name: settle(pid, before[name]) for name, pid in host.pids().items()}
    deltas = {
        name: {
            "threads": after[name].threads - u.threads,
            "fds": after[name].fds - u.fds,
            "rss_mib": (after[name].rss - u.rss) / MIB,
        }
        for name, u in before.items()
    }
    return {"seconds": seconds, "starts": starts, "deltas": deltas, "workers_lost": host.lost_workers()}


def ceiling(fits: dict[str, tuple[float, float]], share: dict[str, Any], worker: int) -> dict[str, Any]:
    """At how many kernels one user's worker runs out: of descriptors under the unit's soft limit, and of
    sockets under libzmq's per-context limit (measured in this process)."""
    soft, why = unit_nofile()
    per_kernel, base = fits["fds"]
    return {
        "unit_soft_nofile": soft,
        "unit_source": why,
        "this_run_worker_soft_nofile": soft_nofile(worker),
        "kernels_at_unit_nofile": int((soft - base) / per_kernel),
        "kernels_at_systemd_default_1024": int((1024 - base) / per_kernel),
        "kernels_at_libzmq_sockets": share["relays_per_context"],
    }


def run(s: Settings) -> dict[str, Any]:
    """The whole measure, on one daemon; everything cleaned up also on an error or Ctrl-C."""
    shares = s.shares()
    per_user, per_host = max(shares) + 1, s.kernels + s.users  # room for the churn's one extra kernel each
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ssd-bench-scale-") as folder:
        progress(f"{s.users} users, kernels per user {shares}")
        with scale_host(Path(folder), s.users, per_user=per_user, per_host=per_host) as host:
            fresh = host.fresh
            points = grow(host, s)
            fits = slopes(points)
            share = relay_share(next(host.kernels()))
            progress(f"relay probe: {share['relays_per_context']} relays per context ({share['refusal']})")
            threaded = relay_share(next(host.kernels()), ThreadedRelay)  # the baseline: a thread per channel
            limit = ceiling(fits, share, host.members[0].worker)
            progress(f"churn for {s.churn:g} s")
            churned = churn(host, s.churn)
            progress(f"burst: {s.burst_starts} starts at once")
            bursted = burst(host, s, per_user, per_host)
    result: dict[str, Any] = {
        "settings": asdict(s),
        "shares": shares,
        "limits": {"per_user": per_user, "per_host": per_host},
    }
    result.update({"fresh": {k: asdict(v) for k, v in fresh.items()}, "points": _plain(points), "fits": fits})
    result.update({"relay": share, "relay_threaded": threaded, "ceiling": limit, "churn": churned, "burst": bursted})
    result.update({"load_before": load_before, "load_after": os.getloadavg(), "cpus": os.cpu_count()})
    return result


def _plain(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Points with their Usage objects as dicts (for JSON)."""
    return [{**p, "usage": {k: asdict(v) for k, v in p["usage"].items()}} for p in points]


def print_report(r: dict[str, Any]) -> None:
    """The figures as terminal tables."""
    console = Console()
    base = r["points"][0]["latency"]
    sizes = Table(
        "kernels",
        "broker MiB",
        "edge MiB",
        "workers MiB (sum)",
        "ping p50 ms",
        "p99",
        "x empty p50",
        "x p99",
        "kernel_list p50 ms",
        "x empty",
    )
    for p in r["points"]:
        u, lat = p["usage"], p["latency"]
        workers = sum(v["rss"] for k, v in u.items() if k.startswith("worker")) / MIB
        sizes.add_row(
            str(p["kernels"]),
            f"{u['broker']['rss'] / MIB:.1f}",
            f"{u['edge']['rss'] / MIB:.1f}",
            f"{workers:.1f}",
            f"{lat['ping_p50']:.2f}",
            f"{lat['ping_p99']:.2f}",
            f"{lat['ping_p50'] / base['ping_p50']:.2f}",
            f"{lat['ping_p99'] / base['ping_p99']:.2f}",
            f"{lat['list_p50']:.2f}",
            f"{lat['list_p50'] / base['list_p50']:.2f}",
        )
    console.print(
        f"{r['settings']['users']} users, shares {r['shares']}; fresh broker "
        f"{r['fresh']['broker']['rss'] / MIB:.1f} MiB, edge {r['fresh']['edge']['rss'] / MIB:.1f} MiB"
    )
    console.print(sizes)
    fits = Table("per kernel in a worker", "slope", "intercept")
    for name, (slope, intercept) in r["fits"].items():
        fits.add_row(name, f"{slope:.2f}", f"{intercept:.1f}")
    console.print(fits)
    c = r["ceiling"]
    for what, rel in (("one relay", r["relay"]), ("one threaded relay (baseline)", r["relay_threaded"])):
        console.print(
            f"{what} (in this process): {rel['threads']:.1f} threads, {rel['fds']:.1f} fds "
            f"{ {k: round(v, 1) for k, v in rel['fd_kinds'].items() if v} }, {rel['rss_mib']:.2f} MiB; "
            f"libzmq context (max_sockets {rel['max_sockets']}) holds {rel['relays_per_context']} relays: "
            f"{rel['refusal'] or 'no refusal'}"
        )
    rel, old = r["relay"], r["relay_threaded"]
    console.print(
        f"relay vs threaded baseline: fds x{rel['fds'] / old['fds']:.2f}, RSS x{rel['rss_mib'] / old['rss_mib']:.2f}, "
        f"threads {rel['threads']:.1f} against {old['threads']:.1f}"
    )
    console.print(
        f"descriptors: unit soft limit {c['unit_soft_nofile']} ({c['unit_source']}); one worker reaches "
        f"it at {c['kernels_at_unit_nofile']} kernels (at 1024: {c['kernels_at_systemd_default_1024']}); "
        f"libzmq's socket limit at {c['kernels_at_libzmq_sockets']} kernels"
    )
    ch, b = r["churn"], r["burst"]
    console.print(
        f"churn {ch['seconds']:g} s, {ch['starts']} starts, lost workers {ch['workers_lost']}; after - before:"
    )
    for name, d in ch["deltas"].items():
        console.print(f"  {name}: threads {d['threads']:+d}, fds {d['fds']:+d}, RSS {d['rss_mib']:+.2f} MiB")
    console.print(
        f"burst: {b['starts']} starts from {b['users']} users in {b['seconds']:.1f} s: {b['ok']} ok "
        f"(expected {b['expected_ok']}), {b['limit_reached']} limit_reached, other {b['other_errors']}, "
        f"lost workers {b['workers_lost']}"
    )
    console.print(f"load average before {r['load_before']}, after {r['load_after']}; {r['cpus']} CPUs")


def settings(argv: list[str] | None) -> tuple[Settings, bool]:
    """The command line: what to run, and whether to print JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--users", type=int, default=20, help="real users (20)")
    parser.add_argument("--kernels", type=int, default=100, help="kernels in all (100)")
    parser.add_argument("--heavy", type=int, help="kernels of the heavy user (60, or kernels/2 when fewer)")
    parser.add_argument("--churn", type=float, default=600.0, metavar="SECONDS", help="churn time (600)")
    parser.add_argument("--quick", action="store_true", help="3 users, 6 kernels, 10 s churn, fewer samples")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    if args.quick:
        return Settings(3, 6, 3, 10.0, 50, 10, (0.5, 1.0)), args.json
    heavy = args.heavy if args.heavy is not None else min(60, args.kernels // 2)
    if args.users < 2 or not 1 <= heavy <= args.kernels - (args.users - 1) or args.churn < 0:
        parser.error("need --users >= 2, 1 <= --heavy <= kernels - (users - 1), --churn >= 0")
    return Settings(args.users, args.kernels, heavy, args.churn, 300, 30, (0.25, 0.5, 0.75, 1.0)), args.json


def main(argv: list[str] | None = None) -> int:
    """Run, print; exit 1 when a check failed (a kernel that did not run, a worker lost, a wrong burst)."""
    s, as_json = settings(argv)
    if os.geteuid() != 0:
        print("bench_scale: run as root (it makes real users and a system-mode daemon)", file=sys.stderr)
        return 1
    try:
        result = run(s)
    except KeyboardInterrupt:
        return 130
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    b = result["burst"]
    failed = b["ok"] != b["expected_ok"] or b["other_errors"] or b["workers_lost"] or result["churn"]["workers_lost"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

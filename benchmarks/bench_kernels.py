"""Time to a kernel's first kernel_info reply: jupyter_client starting it directly vs ssd's kernel_start.

Usage: ``python benchmarks/bench_kernels.py [--runs N] [--kind spyder|ipykernel] [--source VENV] [--json]``

Both sides start the same kernel (``spyder_kernels.console`` or ``ipykernel_launcher``)
with the same environment's Python, on this machine:

- *direct* — ``jupyter_client.KernelManager`` on a kernelspec for that Python:
  ``start_kernel()``, then one ``kernel_info`` request on the shell channel until
  its reply arrives (the readiness ssd waits for; ``wait_for_ready`` would add
  an iopub flush of 0.2 s and favour ssd).
- *ssd* — a logged-in client sends ``kernel_start_request`` to a daemon in user
  mode whose kernel worker already runs (started by one untimed warm-up start);
  the reply comes when the kernel answered ``kernel_info``. This includes the
  request's CURVE round trip, the environment lookup, the connection file and
  the checks.

The two alternate (direct, ssd, direct, ...) so that load on the machine hits
both alike; each kernel is shut down (untimed) before the next start. Figures
are medians; the ratio is ssd / direct. Target: at most 1.10.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from ssd.client import Client

TARGET_RATIO = 1.10
SPARE_TARGET_S = 0.030  # a start served from a spare: under 30 ms
SPARE_TARGET_SPEEDUP = 10.0  # and at least 10x faster than the direct cold start


def argv_for(python: Path, kind: str) -> list[str]:
    """The same command line ssd uses for *kind*."""
    if kind == "spyder":
        return [str(python), "-Xfrozen_modules=off", "-m", "spyder_kernels.console", "-f", "{connection_file}"]
    return [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]


def direct_start(spec_dir: Path) -> float:
    """Seconds from start_kernel() to the first kernel_info reply, with jupyter_client alone."""
    manager = KernelManager(kernel_name="bench", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec_dir)]))
    began = time.perf_counter()
    manager.start_kernel()
    client = manager.client()
    client.start_channels(iopub=False, stdin=False, hb=False, control=False)
    try:
        msg_id = client.kernel_info()
        while client.get_shell_msg(timeout=60)["parent_header"].get("msg_id") != msg_id:
            pass
        elapsed = time.perf_counter() - began
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=False)
    return elapsed


def ssd_start(client: Client, kind: str) -> tuple[float, dict[str, float]]:
    """Seconds for one kernel_start round trip through the daemon, and the server's own timing."""
    began = time.perf_counter()
    reply = client.kernel_start("bench", kind)
    elapsed = time.perf_counter() - began
    client.kernel_shutdown(reply.kernel.kernel_id)
    return elapsed, reply.timing


def daemon(top: Path) -> contextlib.AbstractContextManager[harness.Running]:
    """The daemon in user mode, finding environments in TOP/envs, one spare per (env, kind) allowed."""
    return harness.daemon(
        top, SSD_ENVS_VENV_DIRS=str(top / "envs"), SSD_ENVS_KNOWN_ROOTS="false", SSD_KERNELS_SPARES="1"
    )


def spare_start(client: Client, kind: str) -> float:
    """Seconds for one kernel_start served from a spare (waiting, untimed, until one is ready)."""
    deadline = time.monotonic() + 90
    while not any(k.state == "ready" and k.kind == kind for k in client.kernel_list(spares=True)):
        if time.monotonic() > deadline:
            raise RuntimeError("no spare became ready within 90 s")
        time.sleep(0.05)  # the wait is not timed: a poll of the host's own list
    began = time.perf_counter()
    reply = client.kernel_start("bench", kind)
    elapsed = time.perf_counter() - began
    client.kernel_shutdown(reply.kernel.kernel_id)
    if reply.timing.get("spare") != 1.0:
        raise RuntimeError("the start was not served from a spare")
    return elapsed


def measure(top: Path, python: Path, kind: str, runs: int) -> dict[str, Any]:
    """Alternate direct and ssd starts; return medians and the ratio."""
    spec_dir = top / "kernelspecs" / "bench"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps({"argv": argv_for(python, kind), "display_name": "bench", "language": "python"})
    )
    with daemon(top) as running, harness.logged_in(top, running, timeout=90) as client:
        client.spares("bench", 0)  # cold starts first
        ssd_start(client, kind)  # warm-up: starts the user's kernel worker; not timed
        direct_start(spec_dir.parent)
        direct, through, server = [], [], []
        for n in range(runs):
            direct.append(direct_start(spec_dir.parent))
            elapsed, timing = ssd_start(client, kind)
            through.append(elapsed)
            server.append(timing["ready"] + timing.get("prepare", 0.0))
            print(f"  run {n + 1}/{runs}: direct {direct[-1]:.3f} s, ssd {through[-1]:.3f} s", file=sys.stderr)
        client.spares("bench", 1)
        ssd_start(client, kind)  # a start to follow: the spare is kept from here on
        spared = []
        for n in range(runs):
            spared.append(spare_start(client, kind))
            print(f"  run {n + 1}/{runs}: from a spare {spared[-1] * 1000:.1f} ms", file=sys.stderr)
    d, s, w = statistics.median(direct), statistics.median(through), statistics.median(spared)
    return {
        "kind": kind,
        "runs": runs,
        "direct_median_s": d,
        "ssd_median_s": s,
        "ssd_server_side_median_s": statistics.median(server),
        "ratio": s / d,
        "target_ratio": TARGET_RATIO,
        "met": s / d <= TARGET_RATIO,
        "spare_median_s": w,
        "spare_speedup": d / w,
        "spare_met": w < SPARE_TARGET_S and d / w >= SPARE_TARGET_SPEEDUP,
    }


def main() -> int:
    """Parse arguments, build or take the environment, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="starts of each kind to take the median of (10)")
    parser.add_argument("--kind", choices=["spyder", "ipykernel"], default="spyder")
    parser.add_argument("--source", type=Path, help="an existing venv with spyder-kernels to copy from")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ssd-bench-kernels-") as folder:
        top = Path(folder)
        python = harness.kernel_env(top, args.source) / "bin" / "python"
        return harness.finish(
            "bench_kernels",
            lambda: measure(top, python, args.kind, args.runs),
            as_json=args.json,
            show=show,
            log=top / "daemon.log",
        )


def show(result: dict[str, Any]) -> None:
    """The figures as a short table."""
    print(f"time to the first kernel_info reply ({result['kind']} kernel, median of {result['runs']})")
    print(f"  direct, jupyter_client KernelManager : {result['direct_median_s'] * 1000:8.1f} ms")
    print(f"  ssd kernel_start, client round trip  : {result['ssd_median_s'] * 1000:8.1f} ms")
    print(f"    of which inside the kernel worker  : {result['ssd_server_side_median_s'] * 1000:8.1f} ms")
    verdict = "met" if result["met"] else "MISSED"
    print(f"  ratio ssd / direct: {result['ratio']:.3f}  (target at most {TARGET_RATIO:.2f}: {verdict})")
    print(f"  ssd kernel_start from a spare        : {result['spare_median_s'] * 1000:8.1f} ms")
    spare_verdict = "met" if result["spare_met"] else "MISSED"
    print(
        f"  direct / spare: {result['spare_speedup']:.1f}x  (target under {SPARE_TARGET_S * 1000:.0f} ms and at least "
        f"{SPARE_TARGET_SPEEDUP:.0f}x: {spare_verdict})"
    )


if __name__ == "__main__":
    sys.exit(main())

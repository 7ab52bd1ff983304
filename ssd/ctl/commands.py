"""The ssd-ctl commands: each takes the parsed arguments and an Output, returns an exit code."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any

import msgspec

from ssd import keys
from ssd.client import Client, HostSpec, KnownHosts, parse_host
from ssd.client.identity import client_keypair, key_stem
from ssd.client.known_hosts import KnownHost
from ssd.client.verify import fetch_server_key
from ssd.ctl.args import add_host
from ssd.ctl.output import Output
from ssd.errors import ErrorCode, ServerKeyMismatch, ServerUntrusted, SSDError, Unreachable

__all__ = ["COMMANDS", "add_parsers", "connected"]


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add info, ping, trust, known-hosts, keygen and watch to ssd-ctl's parser."""
    info = sub.add_parser("info", parents=[common], help="show a server's identity, version and status")
    add_host(info)

    ping = sub.add_parser("ping", parents=[common], help="measure round-trip times")
    add_host(ping)
    ping.add_argument("--count", "-c", type=int, default=4, metavar="N", help="number of pings (default 4)")
    ping.add_argument("--interval", "-i", type=float, default=0.2, metavar="S", help="pause between pings")
    ping.add_argument(
        "--worker",
        action="store_true",
        help="go through the diagnostic worker (needs [workers] diag = true and a login)",
    )

    trust = sub.add_parser("trust", parents=[common], help="pin a server's key after showing its fingerprint")
    add_host(trust)
    trust.add_argument("--replace", action="store_true", help="replace a pinned key that changed")

    known = sub.add_parser("known-hosts", parents=[common], help="list pinned servers")
    known.add_argument("--forget", metavar="HOST", help="remove HOST from known hosts")

    keygen = sub.add_parser("keygen", parents=[common], help="make or show this client's key")
    keygen.add_argument("--force", action="store_true", help="replace the key (the old one is kept as *.old)")

    watch = sub.add_parser("watch", parents=[common], help="print the server's events as they happen")
    add_host(watch)
    watch.add_argument("--topic", action="append", metavar="T", help="only this topic (repeatable)")
    watch.add_argument("--count", type=int, default=0, metavar="N", help="stop after N events")


@contextlib.contextmanager
def connected(args: argparse.Namespace, out: Output) -> Iterator[Client]:
    """Connect to args.host, asking a person at a terminal whether to trust a new server."""
    client = Client(_spec(args.host), trust=args.trust, timeout=args.timeout, connect_timeout=args.timeout)
    try:
        try:
            client.connect()
        except ServerUntrusted as exc:
            if not _confirm_trust(exc, args, out):
                raise
            client.close()
            client = Client(_spec(args.host), trust=True, timeout=args.timeout, connect_timeout=args.timeout)
            client.connect()
        yield client
    finally:
        client.close()


def _spec(host: str) -> Any:
    try:
        return parse_host(host)
    except ValueError as exc:
        raise SSDError(f"HOST {exc}", code=ErrorCode.USAGE) from None


def _confirm_trust(exc: ServerUntrusted, args: argparse.Namespace, out: Output) -> bool:
    if args.json or not (sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    out.err.print(f"The authenticity of {args.host} can't be established.\nKey fingerprint is {exc.fingerprint}.")
    answer = input("Trust this server and remember its key? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def cmd_info(args: argparse.Namespace, out: Output) -> int:
    """ssd-ctl info HOST: the server's identity, version and host status."""
    with connected(args, out) as client:
        info = client.server_info()
    if args.json:
        out.document({k: v for k, v in msgspec.to_builtins(info).items() if k != "status"})
        return 0
    rows = [
        ("name", info.name),
        ("version", f"{info.version} (protocol {info.protocol_version})"),
        ("mode", info.mode),
        ("fingerprint", info.fingerprint),
        ("ports", f"control {info.control_port}, events {info.events_port}, key {info.key_port}"),
        ("kernel channels", _TRANSPORTS.get(info.kernel_transport, info.kernel_transport)),
        ("kernels run", _placements(info.placements, info.slurm_partitions)),
        ("system", f"{info.os} {info.os_release} {info.arch}"),
        ("cpus", info.cpus),
        ("memory", f"{_gib(info.memory_available)} free of {_gib(info.memory_total)}"),
        ("load", info.load),
        ("uptime", f"{info.uptime:.0f} s"),
        ("capabilities", info.capabilities),
    ]
    out.fields(f"ssd server {args.host}", rows)
    return 0


_TRANSPORTS = {
    "curve": "curve (encrypted relay; Spyder: ssd-ctl start --tunnel)",
    "plain": "plain (kernel ports signed, not encrypted)",
}


def _placements(placements: list[str], partitions: list[str]) -> str:
    """Where kernels may run: on the host, and in Slurm jobs with the partitions users may ask for."""
    words = ["on this host" if p == "local" else p for p in placements]
    if "slurm" in placements:
        words[placements.index("slurm")] = "in Slurm jobs (" + (", ".join(partitions) or "any partition") + ")"
    return ", ".join(words)


def _gib(value: Any) -> str:
    return f"{(value or 0) / 2**30:.1f} GiB"


def cmd_ping(args: argparse.Namespace, out: Output) -> int:
    """ssd-ctl ping HOST: round-trip times through the broker (or a worker)."""
    if args.count < 1:
        raise SSDError("--count must be at least 1", code=ErrorCode.USAGE)
    rtts: list[float] = []
    with connected(args, out) as client:
        for n in range(args.count):
            if n:
                time.sleep(args.interval)
            started = time.perf_counter()
            if args.worker:
                client.echo(str(n))
            else:
                client.ping(str(n))
            rtts.append((time.perf_counter() - started) * 1000)
            out.say(f"reply from {args.host}: seq={n} time={rtts[-1]:.3f} ms")
    summary = {
        "host": args.host,
        "via": "worker" if args.worker else "broker",
        "count": len(rtts),
        "rtt_ms": [round(r, 3) for r in rtts],
        "min_ms": round(min(rtts), 3),
        "avg_ms": round(sum(rtts) / len(rtts), 3),
        "max_ms": round(max(rtts), 3),
    }
    if args.json:
        out.document(summary)
    else:
        out.say(f"{len(rtts)} replies, min/avg/max = {summary['min_ms']}/{summary['avg_ms']}/{summary['max_ms']} ms")
    return 0


def cmd_trust(args: argparse.Namespace, out: Output) -> int:
    """ssd-ctl trust HOST: pin the server's key after showing its fingerprint."""
    spec = _spec(args.host)
    known = KnownHosts()
    offered = asyncio.run(_fetch_key(spec, args.timeout))
    if offered is None:
        raise Unreachable(f"cannot reach an ssd server at {spec} (no answer on key port {spec.key_port})")
    found = keys.fingerprint(offered)
    old = next((entry for entry in known.pins_for(spec) if entry.public_key != offered), None)
    if old is not None and not args.replace:
        raise ServerKeyMismatch(
            f"SERVER KEY CHANGED for {spec}: known hosts has {old.fingerprint} for {old.host}, the server offers "
            f"{found}. If the change is expected, run: ssd-ctl trust --replace {args.host} (or edit {known.path})"
        )
    # The key port's word is not proof: the CURVE handshake must succeed with
    # this key before it is pinned.
    proof = Client(
        spec, timeout=args.timeout, connect_timeout=args.timeout, known_hosts=_Offered(known.path, spec.key, offered)
    )
    with proof:
        name = proof.server_info().name
    for gone in known.replace(spec, offered):
        if gone.public_key != offered:
            out.say(f"replaced {gone.host} {gone.fingerprint}")
    if args.json:
        out.document({"host": spec.key, "fingerprint": found, "name": name, "known_hosts": str(known.path)})
    else:
        out.say(f"{spec.key} ({name}) trusted with key fingerprint {found}")
        out.say(f"saved in {known.path}")
    return 0


class _Offered(KnownHosts):
    """Known hosts as they would be with *key* pinned for *host*, without writing it."""

    def __init__(self, path: Any, host: str, key: bytes) -> None:
        super().__init__(path)
        self._host, self._key = host, key

    def pins_for(self, spec: HostSpec) -> list[KnownHost]:
        """The offered key for the host being trusted; the file for any other."""
        return [KnownHost(spec.key, self._key)] if spec.key == self._host else super().pins_for(spec)


async def _fetch_key(spec: Any, timeout: float) -> bytes | None:
    offered = await fetch_server_key(spec, timeout)
    return None if offered is None else offered.public_key


def cmd_known_hosts(args: argparse.Namespace, out: Output) -> int:
    """ssd-ctl known-hosts: list pinned servers (or --forget one)."""
    known = KnownHosts()
    if args.forget:
        spec = _spec(args.forget)
        if not known.forget(spec.key):
            raise SSDError(f"{spec.key} is not in {known.path}", code=ErrorCode.NOT_FOUND)
        out.say(f"forgot {spec.key}")
        if args.json:
            out.document({"forgotten": spec.key})
        return 0
    entries = [{"host": e.host, "fingerprint": e.fingerprint} for e in known.entries()]
    if args.json:
        out.document({"file": str(known.path), "hosts": entries})
    else:
        out.table(["host", "fingerprint"], [(e["host"], e["fingerprint"]) for e in entries], title=str(known.path))
    return 0


def cmd_keygen(args: argparse.Namespace, out: Output) -> int:
    """ssd-ctl keygen: make (or show, or with --force replace) the client keypair."""
    stem = key_stem()
    secret = stem.with_suffix(".key_secret")
    if args.force and secret.exists():
        stamp = time.strftime("%Y%m%d%H%M%S")
        for suffix in (".key", ".key_secret"):
            path = stem.with_suffix(suffix)
            if path.exists():
                path.rename(path.with_name(f"{path.name}.{stamp}.old"))
    existed = secret.exists()
    pair = client_keypair()
    result = {
        "public_key": pair.public.decode(),
        "fingerprint": pair.fingerprint,
        "file": str(secret),
        "new": not existed,
    }
    if args.json:
        out.document(result)
    else:
        out.say(("existing" if existed else "new") + f" client key {pair.fingerprint}")
        out.say(f"public key: {pair.public.decode()}")
        out.say(f"stored in {secret}")
    return 0


def cmd_watch(args: argparse.Namespace, out: Output) -> int:
    """ssd-ctl watch HOST: print events as they arrive (JSON lines with --json)."""
    seen = 0
    with connected(args, out) as client:
        for event in client.events(tuple(args.topic or [""])):
            record = {"topic": event.topic, "type": event.msg_type, "content": event.content}
            if args.json:
                out.line(record)
            else:
                out.say(f"{event.topic}: {_summary(event.content)}")
            seen += 1
            if args.count and seen >= args.count:
                break
    return 0


def _summary(content: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in content.items())


COMMANDS = {
    "info": cmd_info,
    "ping": cmd_ping,
    "trust": cmd_trust,
    "known-hosts": cmd_known_hosts,
    "keygen": cmd_keygen,
    "watch": cmd_watch,
}

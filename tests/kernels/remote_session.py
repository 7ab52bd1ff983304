"""A client session on host B (run inside B's network namespace by the relay tests); prints JSON.

    python remote_session.py relay  HOST:PORT CLIENT_DIR MARKER   (start a kernel, use it through the relay)
    python remote_session.py direct HOST:PORT CLIENT_DIR FILE KERNEL MARKER [finish]
                                                                  (use a classic connection file, e.g. a tunnel's)
    python remote_session.py probe  ADDRESS PORT...               (is a plain TCP connect refused?)
    python remote_session.py stranger HOST:PORT CLIENT_DIR KERNEL (a client without the kernel's keypair)
    python remote_session.py clear ADDRESS PORT TEXT                (send TEXT in clear: the capture's control)

Every step's observation goes into the printed document; the test decides.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import zmq
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.session import Session

from ssd.client import Client, KnownHosts
from ssd.client.identity import client_keypair


def _client(host: str, client_dir: str) -> Client:
    folder = Path(client_dir)
    client = Client(
        host, trust=True, identity=client_keypair(folder), known_hosts=KnownHosts(folder / "known_hosts"), timeout=60
    )
    client.connect()
    client.login(os.environ.get("SSD_TEST_USER", "root"))
    return client


def _kc(info: dict[str, Any]) -> BlockingKernelClient:
    kc = BlockingKernelClient()
    kc.load_connection_info(cast(KernelConnectionInfo, info))
    kc.start_channels()
    kc.wait_for_ready(timeout=30)
    return kc


def _execute(kc: BlockingKernelClient, code: str, **kwargs: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    reply = kc.execute_interactive(code, timeout=60, output_hook=seen.append, **kwargs)
    return reply["content"], seen


def _wait_running(kc: BlockingKernelClient, msg_id: str) -> None:
    """Until the code of *msg_id* runs: its first output (execute_input comes before the kernel is there)."""
    while True:
        msg = kc.get_iopub_msg(timeout=30)
        if msg["msg_type"] == "stream" and msg["parent_header"].get("msg_id") == msg_id:
            return


def _outputs(seen: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "stream": "".join(m["content"]["text"] for m in seen if m["msg_type"] == "stream"),
        "display": [m["content"]["data"] for m in seen if m["msg_type"] == "display_data"],
    }


def use_kernel(kc: BlockingKernelClient, marker: str, interrupt: Any) -> dict[str, Any]:
    """Streams, displays, input(), an interrupted sleep: what every frontend needs."""
    result: dict[str, Any] = {}
    reply, seen = _execute(kc, f"import os; print('{marker}', os.getpid())")
    result["stream"] = {"status": reply["status"], **_outputs(seen)}
    reply, seen = _execute(kc, "from IPython.display import HTML, display; display(HTML('<b>bold</b>'))")
    result["display"] = _outputs(seen)["display"]
    prompts: list[str] = []

    def answer(msg: dict[str, Any]) -> None:
        prompts.append(msg["content"]["prompt"])
        kc.input("forty-two")

    reply, seen = _execute(
        kc, "answer = input('question? '); print('got', answer)", allow_stdin=True, stdin_hook=answer
    )
    result["input"] = {"prompts": prompts, "stream": _outputs(seen)["stream"], "status": reply["status"]}
    msg_id = kc.execute("import time; print('sleeping', flush=True); time.sleep(60)")
    _wait_running(kc, msg_id)  # an interrupt that comes before the cell's code runs is lost: it sleeps on
    interrupt()
    while True:
        msg = kc.get_shell_msg(timeout=30)
        if msg["parent_header"].get("msg_id") == msg_id:
            result["interrupt"] = {"status": msg["content"]["status"], "ename": msg["content"].get("ename")}
            break
    return result


def two_clients(info: dict[str, Any]) -> dict[str, Any]:
    """Each client gets its own replies; both see the other's iopub."""
    one, two = _kc(info), _kc(info)
    try:
        id_one = one.execute("print('from-one')")
        id_two = two.execute("print('from-two')")
        replies = {"one": one.get_shell_msg(timeout=30), "two": two.get_shell_msg(timeout=30)}
        seen_by_one = _drain_streams(one)
        seen_by_two = _drain_streams(two)
    finally:
        one.stop_channels()
        two.stop_channels()
    return {
        "one_reply_to_own": replies["one"]["parent_header"]["msg_id"] == id_one,
        "two_reply_to_own": replies["two"]["parent_header"]["msg_id"] == id_two,
        "one_saw": sorted(seen_by_one),
        "two_saw": sorted(seen_by_two),
    }


def _drain_streams(kc: BlockingKernelClient) -> set[str]:
    texts: set[str] = set()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(texts) < 2:
        try:
            msg = kc.get_iopub_msg(timeout=1)
        except Exception:
            continue
        if msg["msg_type"] == "stream":
            texts.add(msg["content"]["text"].strip())
    return texts


def heartbeat_after_kill(kc: BlockingKernelClient, pid: int) -> dict[str, Any]:
    """Beating before; kill -9 the kernel (same pid namespace); silent after."""
    before = kc.hb_channel.is_beating()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while kc.hb_channel.is_beating() and time.monotonic() < deadline:
        time.sleep(0.2)
    return {"before": before, "after": kc.hb_channel.is_beating()}


def relay(host: str, client_dir: str, marker: str) -> dict[str, Any]:
    """Through the relay with jupyter_client's CURVE keys."""
    client = _client(host, client_dir)
    try:
        reply = client.kernel_start("sci", "ipykernel")
        kernel_id, pid = reply.kernel.kernel_id, reply.kernel.pid
        info = client.connection_info(reply.connection)
        kc = _kc(info)
        try:
            result = use_kernel(kc, marker, lambda: client.kernel_interrupt(kernel_id))
            result["two_clients"] = two_clients(info)
            result["connections_seen"] = client.kernel_info(kernel_id).kernel.connections
            result["heartbeat"] = heartbeat_after_kill(kc, pid)
        finally:
            kc.stop_channels()
        return {"kernel_id": kernel_id, "info_keys": sorted(info), **result}
    finally:
        client.close()


def direct(host: str, client_dir: str, path: str, kernel_id: str, marker: str, then: str = "") -> dict[str, Any]:
    """Through a classic connection file (a tunnel's), interrupting through the daemon; with *then* =
    ``finish`` also two clients at once, and a kill -9 to see the heartbeat stop."""
    info = json.loads(Path(path).read_text())
    finish = then == "finish"
    client = _client(host, client_dir)
    kc = _kc(info)
    try:
        result = use_kernel(kc, marker, lambda: client.kernel_interrupt(kernel_id))
        if finish:
            result["two_clients"] = two_clients(info)
            result["heartbeat"] = heartbeat_after_kill(kc, client.kernel_info(kernel_id).kernel.pid)
        return {"info_keys": sorted(info), **result}
    finally:
        kc.stop_channels()
        client.close()


def probe(address: str, *ports: str) -> dict[str, Any]:
    """Which plain TCP connects succeed."""
    results = {}
    for port in ports:
        with socket.socket() as sock:
            sock.settimeout(3)
            results[port] = sock.connect_ex((address, int(port))) == 0
    return {"reachable": results}


def stranger(host: str, client_dir: str, kernel_id: str) -> dict[str, Any]:
    """Clients without the kernel's keypair get no answer: one that knows the relay's public key (and even
    the HMAC key) but has a keypair of its own, and one that has the wrong server key."""
    client = _client(host, client_dir)
    try:
        info = client.connection_info(client.kernel_info(kernel_id).connection)
    finally:
        client.close()
    public, secret = zmq.curve_keypair()
    own_keys = _asks(info, public, secret, info["curve_publickey"].encode())
    wrong_server = _asks(info, public, secret, zmq.curve_keypair()[0])
    right = _asks(
        info, info["curve_publickey"].encode(), info["curve_secretkey"].encode(), info["curve_publickey"].encode()
    )
    return {"own_keypair_answered": own_keys, "wrong_server_key_answered": wrong_server, "right_keys_answered": right}


def _asks(info: dict[str, Any], public: bytes, secret: bytes, server: bytes) -> bool:
    """Send a signed kernel_info_request to the relay's shell port; True if a reply comes within 5 s."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public, secret, server
    sock.connect(f"tcp://{info['ip']}:{info['shell_port']}")
    try:
        session = Session(key=info["key"].encode(), signature_scheme=info["signature_scheme"])
        session.send(sock, "kernel_info_request", {})
        return bool(sock.poll(5000))
    finally:
        sock.close(0)
        ctx.term()


def clear(address: str, port: str, text: str) -> dict[str, Any]:
    """Send *text* over plain TCP (to any listening port): proof that the capture sees payloads."""
    with socket.create_connection((address, int(port)), timeout=5) as sock:
        sock.sendall(text.encode())
        sock.shutdown(socket.SHUT_WR)  # TEXT, then our FIN: closing with the server's bytes unread would reset it
        while sock.recv(4096):  # until the server closes its end
            pass
    return {"sent": True}


def start(host: str, client_dir: str) -> dict[str, Any]:
    """Start a kernel; report its id and pid, its own (server-side) connection file and the relay's info."""
    client = _client(host, client_dir)
    try:
        reply = client.kernel_start("sci", "ipykernel")
        return {
            "kernel_id": reply.kernel.kernel_id,
            "pid": reply.kernel.pid,
            "connection_file": reply.connection_file,
            "relay": client.connection_info(reply.connection),
        }
    finally:
        client.close()


def main() -> int:
    """Run one scenario and print its document."""
    scenario, *args = sys.argv[1:]
    handlers: dict[str, Callable[..., dict[str, Any]]] = {
        "relay": relay,
        "direct": direct,
        "probe": probe,
        "stranger": stranger,
        "clear": clear,
        "start": start,
    }
    print(json.dumps(handlers[scenario](*args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

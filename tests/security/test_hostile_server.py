"""Finding 11: ssd-ctl builds no file path from a kernel id a server chose, unless it is a UUID.

A hostile or compromised server cannot be an ssd daemon, so ``HostileServerFake`` stands in for
one: a real CURVE ROUTER on loopback that speaks ssd's wire protocol and answers kernel requests
with ids that are paths. The client's runtime directory already holds a ``kernel-ssd-x/`` folder
(any name starting so would do), through which such an id would climb out of it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import zmq
from netns import ctl

from ssd.client.kernels import checked_kernel_id
from ssd.errors import ErrorCode, SSDError
from ssd.protocol import BadMessage, Wire

CONNECTION = {
    "transport": "tcp",
    "ip": "127.0.0.1",
    **{f"{channel}_port": 1 for channel in ("shell", "iopub", "stdin", "control", "hb")},
    "key": "",
    "signature_scheme": "hmac-sha256",
}


class HostileServerFake:
    """Answers like ssd (a fake: no real daemon sends these), every kernel id being *kernel_id*."""

    def __init__(self, kernel_id: str) -> None:
        self.kernel_id = kernel_id
        self.public, secret = zmq.curve_keypair()
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        self.sock.curve_server = True
        self.sock.curve_secretkey = secret
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.wire = Wire()
        self.asked: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="hostile server fake")

    def _answer(self, msg_type: str) -> dict[str, Any]:
        # A whole kernel description: only its id is hostile, so the id check is what must refuse it.
        kernel = {"kernel_id": self.kernel_id, "name": "evil", "env": "/opt/e", "kind": "spyder", "state": "ready"}
        if msg_type == "kernel_list_request":
            return {"status": "ok", "kernels": [kernel]}
        return {"status": "ok", "kernel": kernel, "connection": CONNECTION, "kernel_info": {}}

    def _serve(self) -> None:
        while not self._stop.is_set():
            if not self.sock.poll(50):
                continue
            try:
                msg = self.wire.parse(self.sock.recv_multipart(), has_idents=True)
            except BadMessage:
                continue
            kind = str(msg.header["msg_type"])
            self.asked.append(kind)
            reply = kind.replace("_request", "_reply")
            self.sock.send_multipart(
                self.wire.serialize(reply, self._answer(kind), parent=msg.header, idents=msg.idents)[1]
            )

    def __enter__(self) -> HostileServerFake:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
        self.ctx.term()


@contextmanager
def hostile(kernel_id: str, tmp: Path) -> Iterator[tuple[HostileServerFake, Path, dict[str, str]]]:
    """The fake, pinned in a fresh client directory, and the environment that points ssd-ctl at a runtime dir."""
    with HostileServerFake(kernel_id) as server:
        client_dir = tmp / "client"
        client_dir.mkdir(mode=0o700)
        (client_dir / "known_hosts").write_text(f"127.0.0.1:{server.port} {server.public.decode()}\n")
        runtime = tmp / "home" / "runtime"
        (runtime / "kernel-ssd-x").mkdir(parents=True)
        yield server, client_dir, {"JUPYTER_RUNTIME_DIR": str(runtime)}


CLIMBING = "x/../../planted"  # runtime/kernel-ssd-x/../../planted.json is tmp/home/planted.json


@pytest.mark.parametrize("command", ["attach", "stop"])
def test_ssd_ctl_refuses_a_kernel_id_that_is_a_path(tmp_path: Path, command: str) -> None:
    """attach would write, stop would remove, a file outside the runtime dir: both refuse, exit 1, no traceback."""
    victim = tmp_path / "home" / "planted.json"
    with hostile(CLIMBING, tmp_path) as (server, client_dir, env):
        victim.write_text("the user's own file\n")
        result = ctl(command, f"127.0.0.1:{server.port}", "evil", client_dir=client_dir, env=env)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "invalid kernel id" in result.stderr
    assert "Traceback" not in result.stderr
    assert victim.read_text() == "the user's own file\n"
    assert server.asked == ["kernel_list_request"]  # refused at the reply, before anything acts on it


@pytest.mark.parametrize(
    "kernel_id",
    [CLIMBING, "/etc/passwd", "..", "", "a\0b", "x" * 5000, "0A3E4D6C-1B2F-4C3D-9E8F-0123456789AB", 42, None],
)
def test_only_a_canonical_uuid_is_a_kernel_id(kernel_id: Any) -> None:
    """The boundary check itself: anything but a lower-case canonical UUID is refused with bad_reply."""
    with pytest.raises(SSDError) as refused:
        checked_kernel_id(kernel_id)
    assert refused.value.code == ErrorCode.BAD_REPLY
    assert len(refused.value.message) < 200


def test_a_real_kernel_id_passes() -> None:
    """What ssd's kernel worker makes (str(uuid4())) is accepted as is."""
    kernel_id = "0a3e4d6c-1b2f-4c3d-9e8f-0123456789ab"
    assert checked_kernel_id(kernel_id) == kernel_id
    assert os.sep not in kernel_id

"""An ssd kernel through a real Jupyter Server's websocket, as JupyterLab uses it: execute, interrupt, restart,
a crash with Jupyter's own auto-restart, and delete — all on one websocket opened at the start.

After a restart (asked for, or Jupyter's after a crash) the kernel is the same kernel on the same ports and
key (restarted in place on the host), so the websocket the page holds keeps working without reconnecting.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from jupyter_client.session import Session
from jupyterhost import Host, JupyterServer, host_admin, make_host
from support.eventually import eventually
from tornado.websocket import WebSocketClientConnection, websocket_connect

from ssd.client import Client

REPLY_TIMEOUT = 90.0  # a loaded 2-core machine, and a restart of the kernel in between


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    """The daemon and an ssd kernelspec written by ssd-ctl."""
    made = make_host(tmp_path_factory.mktemp("jupyter-ws"))
    yield made
    made.daemon.stop_and_check()


@pytest.fixture
def admin(host: Host, tmp_path: Path) -> Iterator[Client]:
    """Another client of the same user, to look at the host; shuts down whatever a test left there."""
    with host_admin(host, tmp_path) as client:
        yield client


class Channels:
    """One websocket on /api/kernels/ID/channels, speaking Jupyter Server's JSON message format."""

    def __init__(self, connection: WebSocketClientConnection) -> None:
        self.connection = connection
        self.session = Session()
        self.seen: list[dict[str, Any]] = []

    async def send(self, msg_type: str, content: dict[str, Any], channel: str = "shell") -> str:
        """Send one request; its msg_id."""
        msg = self.session.msg(msg_type, content)
        self.connection.write_message(json.dumps({**msg, "channel": channel}, default=str))
        return str(msg["header"]["msg_id"])

    async def next(self) -> dict[str, Any]:
        """The next message from the kernel (any channel)."""
        text = await self.connection.read_message()
        assert text is not None, "the websocket closed"
        message: dict[str, Any] = json.loads(text)
        self.seen.append(message)
        return message

    async def run(self, code: str, *, interrupt: Any = None) -> tuple[dict[str, Any], str]:
        """Execute *code*: its execute_reply content and its stdout; *interrupt* is awaited once it runs.

        Done when both the reply (shell) and the kernel's idle status for the request (iopub) came: the two
        channels are not ordered with respect to each other, so output may still follow the reply.
        """
        msg_id = await self.send("execute_request", {"code": code, "silent": False, "stop_on_error": False})
        out: list[str] = []
        reply: dict[str, Any] | None = None
        idle = False
        async with asyncio.timeout(REPLY_TIMEOUT):
            while reply is None or not idle:
                message = await self.next()
                if message.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = message["header"]["msg_type"]
                if kind == "stream":
                    out.append(message["content"]["text"])
                    if interrupt is not None:
                        await interrupt()
                        interrupt = None
                elif kind == "execute_reply":
                    reply = message["content"]
                elif kind == "status" and message["content"]["execution_state"] == "idle":
                    idle = True
        return reply, "".join(out)

    async def until_idle_after_restart(self) -> None:
        """Wait for the kernel to say it restarted (Jupyter Server's 'restarting' status) and then is idle."""
        async with asyncio.timeout(REPLY_TIMEOUT):
            restarting = False
            while True:
                message = await self.next()
                if message["header"]["msg_type"] != "status":
                    continue
                state = message["content"]["execution_state"]
                restarting = restarting or state in ("restarting", "autorestarting", "starting")
                if restarting and state == "idle":
                    return


async def _open(server: JupyterServer, kernel_id: str) -> Channels:
    url = f"ws://127.0.0.1:{server.port}/api/kernels/{kernel_id}/channels?token={server.token}"
    return Channels(await websocket_connect(url, max_message_size=64 << 20))


def _pid_of(admin: Client, kernel_id: str) -> int:
    (kernel,) = [k for k in admin.kernel_list() if k.kernel_id == kernel_id]
    assert kernel.state == "ready", kernel
    return int(kernel.pid)


@pytest.mark.timeout(300)  # five kernel lifecycles in a row on a loaded machine
def test_one_websocket_through_execute_interrupt_restart_crash_and_delete(
    host: Host, admin: Client, tmp_path: Path
) -> None:
    """A page's websocket survives everything but the delete: the kernel runs code as the user, a sleeping
    cell is interrupted over REST, a REST restart and a crash (os._exit, restarted by Jupyter Server's own
    restarter) each give a fresh namespace on the same host kernel id, and a delete removes it from the host."""
    server = JupyterServer(host, tmp_path)
    try:
        asyncio.run(_session(server, admin))
    finally:
        server.stop()


async def _session(server: JupyterServer, admin: Client) -> None:
    model = await asyncio.to_thread(server.request, "POST", "/api/kernels", {"name": server_spec(server)})
    (hosted,) = await asyncio.to_thread(admin.kernel_list)
    channels = await _open(server, model["id"])
    try:
        reply, out = await channels.run("x = 6 * 7\nimport os\nprint(x, os.getpid())")
        assert reply["status"] == "ok"
        first_pid = int(out.split()[1])
        assert out.split()[0] == "42"
        assert first_pid == hosted.pid

        async def interrupt() -> None:
            await asyncio.to_thread(server.request, "POST", f"/api/kernels/{model['id']}/interrupt")

        reply, _ = await channels.run("import time\nprint('sleeping', flush=True)\ntime.sleep(60)", interrupt=interrupt)
        assert (reply["status"], reply.get("ename")) == ("error", "KeyboardInterrupt")

        await asyncio.to_thread(server.request, "POST", f"/api/kernels/{model['id']}/restart")
        reply, out = await channels.run("print('x' in globals(), os.getpid() if 'os' in globals() else None)")
        assert (reply["status"], out.split()) == ("ok", ["False", "None"])
        restarted_pid = await asyncio.to_thread(_pid_of, admin, hosted.kernel_id)
        assert restarted_pid != first_pid

        await channels.send("execute_request", {"code": "import os; os._exit(1)", "silent": False})
        await channels.until_idle_after_restart()
        reply, out = await channels.run("import os\nprint('alive', os.getpid())")
        assert reply["status"] == "ok"
        assert out.split()[0] == "alive"
        assert int(out.split()[1]) not in (first_pid, restarted_pid)
        listed = await asyncio.to_thread(admin.kernel_list)
        assert [k.kernel_id for k in listed] == [hosted.kernel_id], "restarted in place, not a new kernel"
        # The restarted kernel answers a round trip before jupyter_client's restart returns (the provisioner
        # logs its third start then); a DELETE meanwhile meets jupyter_client's MultiKernelManager reading the
        # pending restart's result (InvalidStateError: a 500). See docs/jupyter.md, known limits.
        await asyncio.to_thread(
            eventually, lambda: len(server.log_records("ssd-provisioner: kernel")) >= 3, "the restart returned"
        )
    finally:
        channels.connection.close()

    await asyncio.to_thread(server.request, "DELETE", f"/api/kernels/{model['id']}")
    await asyncio.to_thread(
        eventually, lambda: not admin.kernel_list(), "the kernel gone from the host", timeout=60, interval=0.2
    )
    await asyncio.to_thread(eventually, lambda: _gone(hosted.pid), "its first process gone", timeout=30)


def server_spec(server: JupyterServer) -> str:
    """The kernelspec name the host fixture installed (the only ssd spec of this Jupyter)."""
    names = server.request("GET", "/api/kernelspecs")["kernelspecs"]
    (name,) = [n for n in names if n.startswith("ssd")]
    return str(name)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True

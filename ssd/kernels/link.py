"""The worker's own line to a kernel: kernel_info, shutdown and interrupt requests, iopub activity.

Messages are signed with the kernel's key by jupyter_client's ``Session``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import msgspec
import zmq
import zmq.asyncio
from jupyter_client.session import Session

from ssd.kernels.transport import kernel_endpoint, secure_link

__all__ = ["KernelLink", "KernelSilent", "kernel_info_summary"]


DELIM = b"<IDS|MSG>"


class _Header(msgspec.Struct):
    msg_type: str


class _Status(msgspec.Struct):
    execution_state: str


class KernelSilent(Exception):
    """The kernel did not answer in time."""


class KernelLink:
    """Control and iopub connections to one kernel, with the time of its last iopub message."""

    def __init__(self, ctx: zmq.asyncio.Context, info: dict[str, Any]) -> None:
        self.ctx = ctx
        self.info = info
        self.session = Session(key=info["key"].encode(), signature_scheme=info["signature_scheme"], username="ssd")
        self.last_activity = time.time()
        self.execution_state = "starting"
        self._control = self._connect(zmq.DEALER, "control")
        self._iopub = self._connect(zmq.SUB, "iopub")
        # Only the kernel's own topics (status, execute_input...): every request a client sends shows there,
        # and the kernel need not send the worker a copy of every output (streams, displays).
        self._iopub.setsockopt(zmq.SUBSCRIBE, b"kernel.")
        self._watch: asyncio.Task[None] | None = None

    def _connect(self, kind: int, channel: str) -> zmq.asyncio.Socket:
        sock = self.ctx.socket(kind)
        sock.linger = 0
        # A starting kernel binds its sockets a few hundred ms after exec: retry the refused connect
        # every 20 ms rather than libzmq's 100 ms, so readiness is seen when it happens.
        sock.reconnect_ivl = 20
        secure_link(sock, self.info)
        sock.connect(kernel_endpoint(self.info, channel))
        return sock

    def start_watching(self) -> None:
        """Follow iopub to know when the kernel was last active, and whether it is busy."""
        if self._watch is None:
            self._watch = asyncio.create_task(self._follow_iopub())

    async def _follow_iopub(self) -> None:
        while True:
            frames = await self._iopub.recv_multipart()
            self.last_activity = time.time()
            # Only the kernel binds this port, and what is read here only marks activity:
            # the signature is not checked, and only a status message's small frames are parsed.
            with contextlib.suppress(ValueError, IndexError, msgspec.DecodeError, msgspec.ValidationError):
                start = frames.index(DELIM)
                header = msgspec.json.decode(frames[start + 2], type=_Header)
                if header.msg_type == "status":
                    status = msgspec.json.decode(frames[start + 5], type=_Status)
                    self.execution_state = status.execution_state

    async def request(self, channel: str, msg_type: str, content: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request on shell or control and return the reply's content."""
        sock = self._control if channel == "control" else self._connect(zmq.DEALER, channel)
        try:
            sent = self.session.send(sock, msg_type, content)
            assert sent is not None  # Session.send returns None only when given no socket
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                if not await sock.poll(left * 1000):
                    break
                _, parts = self.session.feed_identities(await sock.recv_multipart())
                reply = self.session.deserialize(parts, content=True)
                if reply["parent_header"].get("msg_id") == sent["header"]["msg_id"]:
                    return dict(reply["content"])
            raise KernelSilent(f"no {msg_type} reply within {timeout:g} s")
        finally:
            if sock is not self._control:
                sock.close(linger=0)

    def close(self) -> None:
        """Close the sockets and stop following iopub."""
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        for sock in (self._control, self._iopub):
            with contextlib.suppress(zmq.ZMQError):
                sock.close(linger=0)


def kernel_info_summary(reply: dict[str, Any]) -> dict[str, Any]:
    """What a client wants of a kernel_info_reply: language, implementation, spyder-kernels version."""
    language = reply.get("language_info", {})
    spyder = reply.get("spyder_kernels_info")
    return {
        "protocol_version": reply.get("protocol_version"),
        "implementation": reply.get("implementation"),
        "implementation_version": reply.get("implementation_version"),
        "language": language.get("name"),
        "language_version": language.get("version"),
        "spyder_kernels": spyder[0] if isinstance(spyder, list | tuple) and spyder else None,
        "banner": reply.get("banner", ""),
    }

"""The env service ("cpp", conda proxy process): one worker per user, running as that user.

It lists the user's environments with exactly the user's rights (what the user
cannot read, it cannot see) and administers them with the real tools (venv +
pip always, conda/mamba/micromamba where installed), never through a shell.
Long operations answer at once with an operation id, publish their progress
as ``env_progress`` events, and can be cancelled.
"""

from __future__ import annotations

import asyncio
import grp
import os
import shutil
from pathlib import Path
from typing import Any, Literal

import msgspec

from ssd import contract
from ssd.envs import EnvDiscovery, EnvInfo, admin, discovery_options, find_env, validate
from ssd.errors import ErrorCode, SSDError
from ssd.messages import (
    EnvCancelRequest,
    EnvCreateRequest,
    EnvInfoRequest,
    EnvInstallRequest,
    EnvListRequest,
    EnvRemoveRequest,
)
from ssd.replies import EnvCancelReply, EnvDescription, EnvInfoReply, EnvListReply, EnvOperationReply
from ssd.workers import wire
from ssd.workers.base import Worker

__all__ = ["EnvWorker"]


class EnvWorker(Worker):
    """Serves the ``env_*`` requests for its one user."""

    service = "env"
    capacity = 16

    def __init__(self, credentials: wire.Credentials) -> None:
        super().__init__(credentials)
        envs: dict[str, Any] = dict(credentials.options.get("envs", {}))
        options = discovery_options(envs)
        self.home = Path(os.environ.get("HOME", "~")).expanduser()
        self.discovery = EnvDiscovery(options, self.home, dict(os.environ))
        self.administration = bool(envs.get("administration", True))
        self.admin_deny_groups = set(envs.get("admin_deny_groups", []))
        self.venv_home = str(envs.get("venv_home", "~/.venvs"))
        self.operations: dict[str, admin.Operation] = {}

    def check_admin(self) -> None:
        """Refuse administration where the configuration turns it off for this user."""
        groups = {name for gid in os.getgroups() if (name := _group_name(gid))}
        if not self.administration or groups & self.admin_deny_groups:
            raise SSDError("environment administration is turned off for you on this host", code=ErrorCode.NOT_ALLOWED)

    def tools(self) -> dict[str, str]:
        """The conda-family executables this user has: on PATH or in a discovered root."""
        found = {name: path for name in admin.CONDA_TOOLS if (path := shutil.which(name))}
        for root in self.discovery.roots():
            for name in admin.CONDA_TOOLS:
                candidate = root / ("condabin" if name == "conda" else "bin") / name
                if name not in found and os.access(candidate, os.X_OK):
                    found[name] = str(candidate)
        return found

    def launch(self, kind: Literal["create", "install", "remove"], target: str, work: Any) -> EnvOperationReply:
        """Start an operation whose progress goes out as events; reply with its id at once."""
        made: list[admin.Operation] = []
        operation = admin.Operation(kind, target, on_progress=lambda record: self._progress(made[0], record))
        made.append(operation)
        self.operations[operation.id] = operation
        operation.start(work)
        return EnvOperationReply(operation=operation.id, kind=kind, target=target)

    def _progress(self, operation: admin.Operation, record: admin.Progress) -> None:
        """Publish one progress record (tool output is not a secret; no credentials pass here)."""
        content = {
            "operation": operation.id,
            "kind": operation.kind,
            "target": operation.target,
            "phase": record.phase,
            "line": wire.clip(record.line, wire.MAX_EVENT_LINE),
            "percent": record.percent,
            "state": operation.state.value,
        }
        self.publish("env_progress", content)


def _group_name(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


async def env_list(worker: EnvWorker, content: EnvListRequest, request: wire.Request) -> EnvListReply:
    """Every environment the user can see."""
    envs = await asyncio.to_thread(worker.discovery.list)
    return EnvListReply(envs=[_described(env) for env in envs])


async def env_info(worker: EnvWorker, content: EnvInfoRequest, request: wire.Request) -> EnvInfoReply:
    """One environment, by name or prefix."""
    envs = await asyncio.to_thread(worker.discovery.list)
    return EnvInfoReply(env=_described(find_env(envs, content.env)))


def _described(env: EnvInfo) -> EnvDescription:
    return EnvDescription(**msgspec.structs.asdict(env))


def _specs(packages: list[str], spyder: str | None) -> list[str]:
    try:
        specs = validate.package_specs(packages)
        if spyder is not None:
            specs += admin.spyder_specs(spyder)
    except validate.EnvRefused:
        raise
    except ValueError as exc:
        raise SSDError(str(exc), code=ErrorCode.BAD_REQUEST) from None
    return specs


async def env_create(worker: EnvWorker, content: EnvCreateRequest, request: wire.Request) -> EnvOperationReply:
    """Create a venv (pip) or a conda environment; progress as events."""
    worker.check_admin()
    try:
        name = validate.env_name(content.name)
        python = validate.python_version(content.python) if content.python else None
        _, exe = admin.pick_tool("venv" if content.tool in ("pip", "venv") else "conda", content.tool, worker.tools())
    except validate.EnvRefused:
        raise
    except ValueError as exc:
        raise SSDError(str(exc), code=ErrorCode.BAD_REQUEST) from None
    specs = _specs(content.packages, content.spyder)
    if exe is None:
        home = Path(worker.venv_home.replace("~", str(worker.home), 1))
        await asyncio.to_thread(home.mkdir, mode=0o700, parents=True, exist_ok=True)
        prefix = validate.new_prefix(home / name)
        interpreter = validate.python_interpreter(python)  # refused now, not inside the operation
        return worker.launch("create", str(prefix), lambda p: admin.create_venv(prefix, interpreter, specs, p))
    return worker.launch("create", name, lambda p: admin.create_conda(exe, name, python, specs, p))


async def env_install(worker: EnvWorker, content: EnvInstallRequest, request: wire.Request) -> EnvOperationReply:
    """Install packages into a discovered, writable environment with its own tool."""
    worker.check_admin()
    specs = _specs(content.packages, content.spyder)
    if not specs:
        raise SSDError("name at least one package (or --spyder VERSION)", code=ErrorCode.BAD_REQUEST)
    envs = await asyncio.to_thread(worker.discovery.list)
    env = find_env(envs, content.env)
    exe = _conda_exe(worker, env, content.tool)
    known = [e.prefix for e in envs]
    prefix = validate.known_prefix(env.prefix, known)  # refused at once: not ours, a link, not writable
    return worker.launch("install", env.prefix, lambda p: admin.install(prefix, specs, p, known=known, conda_exe=exe))


async def env_remove(worker: EnvWorker, content: EnvRemoveRequest, request: wire.Request) -> EnvOperationReply:
    """Remove a discovered, writable environment (a name is checked as env create checks one: "-rf" is refused)."""
    worker.check_admin()
    if not content.env.startswith("/"):
        try:
            validate.env_name(content.env)
        except ValueError as exc:
            raise SSDError(str(exc), code=ErrorCode.BAD_REQUEST) from None
    envs = await asyncio.to_thread(worker.discovery.list)
    env = find_env(envs, content.env)
    exe = _conda_exe(worker, env, "auto")
    known = [e.prefix for e in envs]
    prefix = validate.removable_prefix(env.prefix, known)
    return worker.launch("remove", env.prefix, lambda p: admin.remove(prefix, p, known=known, conda_exe=exe))


def _conda_exe(worker: EnvWorker, env: EnvInfo, tool: str) -> str | None:
    try:
        return admin.pick_tool(env.kind, tool, worker.tools())[1]
    except ValueError as exc:
        raise SSDError(str(exc), code=ErrorCode.BAD_REQUEST) from None


async def env_cancel(worker: EnvWorker, content: EnvCancelRequest, request: wire.Request) -> EnvCancelReply:
    """Cancel a running operation; its tool's process group is stopped."""
    operation = worker.operations.get(content.operation)
    if operation is None:
        raise SSDError(f"no operation {content.operation!r}", code=ErrorCode.NOT_FOUND)
    operation.cancel()
    return EnvCancelReply(state=(await operation.wait()).value)


EnvWorker.handlers = {
    contract.ENV_LIST.msg_type: env_list,
    contract.ENV_INFO.msg_type: env_info,
    contract.ENV_CREATE.msg_type: env_create,
    contract.ENV_INSTALL.msg_type: env_install,
    contract.ENV_REMOVE.msg_type: env_remove,
    contract.ENV_CANCEL.msg_type: env_cancel,
}

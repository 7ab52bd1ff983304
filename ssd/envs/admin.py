"""Environment administration as the user: create, install into and remove venv and conda environments.

The per-user env worker calls these coroutines. They run the real tools (venv, pip, conda/mamba/micromamba)
never through a shell, each in its own session; every output line becomes a ``Progress`` record; cancelling
terminates the tool's process group (SIGTERM, SIGKILL after a grace). ``Operation`` adds an id, a state, subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import re
import shutil
import signal
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ssd.envs import validate
from ssd.envs.compat import install_specs
from ssd.errors import ErrorCode, SSDError

__all__ = ["Operation", "OperationState", "Progress", "ProgressCallback", "ToolFailed", "create_conda", "create_venv"]
__all__ += ["install", "pick_tool", "remove", "run_tool", "spyder_specs"]

log = logging.getLogger(__name__)

CONDA_TOOLS = ("mamba", "conda", "micromamba")  # preference order when none is configured
PIP_TOOL = "pip"
TAIL_LINES = 50
TERM_GRACE = 5.0
_MAX_LINE = 8192
_SPLIT = re.compile(rb"[\r\n\0]")
_PERCENT = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d+)?)\s?%")


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress record: the phase, an output line of the tool, a percentage where the tool gives one."""

    phase: str
    line: str | None = None
    percent: float | None = None


ProgressCallback = Callable[[Progress], None]
Known = Collection[str | Path]  # the prefixes discovery found


class ToolFailed(SSDError):
    """An administration tool exited with an error; ``output`` holds its last lines."""

    code = ErrorCode.ENV_TOOL_FAILED

    def __init__(self, message: str, *, output: Sequence[str] = (), returncode: int | None = None) -> None:
        super().__init__(message + ("\n" + "\n".join(output) if output else ""))
        self.output = list(output)
        self.returncode = returncode


class OperationState(enum.StrEnum):
    """Where an operation stands."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


def _percent(line: str) -> float | None:
    """The last percentage in *line* (``45%``), if any and at most 100."""
    found = [float(match) for match in _PERCENT.findall(line)]
    return found[-1] if found and found[-1] <= 100.0 else None


async def _lines(stream: asyncio.StreamReader) -> AsyncIterator[str]:
    """Lines of *stream*, split at newlines, carriage returns (progress bars) and NULs; over-long ones cut."""
    pending = b""
    while chunk := await stream.read(65536):
        pending += chunk
        *complete, pending = _SPLIT.split(pending)
        while len(pending) > _MAX_LINE:
            complete.append(pending[:_MAX_LINE])
            pending = pending[_MAX_LINE:]
        for raw in complete:
            if raw.strip():
                yield raw.decode(errors="replace").rstrip()
    if pending.strip():
        yield pending.decode(errors="replace").rstrip()


async def _stop_group(process: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the process group of *process*, SIGKILL it after *grace* seconds, and reap the leader."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), grace)
    # A group id is not reused while any member lives, so this also reaches stragglers after the leader exits.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


async def run_tool(
    argv: Sequence[str], phase: str, progress: ProgressCallback, *, env: Mapping[str, str] | None = None
) -> None:
    """Run *argv* (no shell) in its own session, report each output line; raise ToolFailed on a non-zero exit."""
    progress(Progress(phase))
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    try:
        assert process.stdout is not None
        async for line in _lines(process.stdout):
            tail.append(line)
            progress(Progress(phase, line, _percent(line)))
        returncode = await process.wait()
    except BaseException:
        await asyncio.shield(_stop_group(process, TERM_GRACE))
        raise
    if returncode != 0:
        raise ToolFailed(f"{Path(argv[0]).name} failed (exit code {returncode})", output=tail, returncode=returncode)


_PIP_ENV = {"PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


async def create_venv(prefix: Path, python: str | None, packages: Sequence[str], progress: ProgressCallback) -> None:
    """``python -m venv PREFIX`` then ``pip install`` the packages; a failed or cancelled create leaves nothing."""
    specs = validate.package_specs(packages)
    interpreter = validate.python_interpreter(python)
    prefix = validate.new_prefix(prefix, create=True)  # made here, so the cleanup below only removes our own
    try:
        await run_tool([interpreter, "-I", "-m", "venv", str(prefix)], "venv", progress)
        if specs:
            await _pip_install(prefix, specs, progress)
    except BaseException:
        shutil.rmtree(prefix, ignore_errors=True)
        raise
    progress(Progress("done", None, 100.0))


async def _pip_install(prefix: Path, specs: Sequence[str], progress: ProgressCallback) -> None:
    """``PREFIX/bin/python -I -u -m pip install`` *specs* (``-u``: ``-I`` ignores PYTHONUNBUFFERED)."""
    python = str(prefix / "bin" / "python")
    argv = [python, "-I", "-u", "-m", "pip", "install", "--no-input", "--progress-bar", "off", *specs]
    await run_tool(argv, "pip", progress, env=_PIP_ENV)


async def install(
    prefix: Path, packages: Sequence[str], progress: ProgressCallback, *, known: Known, conda_exe: str | None = None
) -> None:
    """Install *packages* into a discovered environment: ``conda install -y -p`` when *conda_exe* is given, else pip."""
    specs = validate.package_specs(packages)
    if not specs:
        raise ValueError("no packages to install")
    prefix = validate.known_prefix(prefix, known)
    if conda_exe is not None:
        await run_tool([conda_exe, "install", "-y", "-p", str(prefix), *specs], "install", progress)
    else:
        await _pip_install(prefix, specs, progress)
    progress(Progress("done", None, 100.0))


async def create_conda(
    conda_exe: str, name_or_prefix: str | Path, python: str | None, packages: Sequence[str], progress: ProgressCallback
) -> None:
    """``conda create -y -n NAME`` (or ``-p PREFIX`` for an absolute path) with ``python=X`` and the packages."""
    specs = validate.package_specs(packages)
    given = str(name_or_prefix)
    target = ["-p", str(validate.new_prefix(given))] if given[:1] == "/" else ["-n", validate.env_name(given)]
    if python is not None:
        specs.insert(0, f"python={validate.python_version(python)}")
    await run_tool([conda_exe, "create", "-y", *target, *specs], "create", progress)
    progress(Progress("done", None, 100.0))


async def remove(prefix: Path, progress: ProgressCallback, *, known: Known, conda_exe: str | None = None) -> None:
    """Remove a discovered environment: ``conda remove -y -p PREFIX --all``, or delete the venv's tree."""
    prefix = validate.removable_prefix(prefix, known)
    if conda_exe is not None:
        await run_tool([conda_exe, "remove", "-y", "-p", str(prefix), "--all"], "remove", progress)
    else:
        progress(Progress("remove", str(prefix)))
        # rmtree works on directory fds here (avoids_symlink_attacks) and never follows a link out of the tree.
        await asyncio.to_thread(shutil.rmtree, prefix)
    progress(Progress("done", None, 100.0))


def pick_tool(kind: str, configured: str | None, available: Mapping[str, str]) -> tuple[str, str | None]:
    """The tool for an environment of *kind* (venv|conda): ``(name, executable)``; pip has no executable here."""
    if kind not in ("venv", "conda"):
        raise ValueError(f"unknown environment kind {kind!r}")
    if configured in (None, "", "auto"):
        found = [name for name in CONDA_TOOLS if name in available] if kind == "conda" else []
        return (found[0], available[found[0]]) if found else (PIP_TOOL, None)
    if configured in (PIP_TOOL, "venv"):
        return PIP_TOOL, None
    if configured not in CONDA_TOOLS:
        raise ValueError(f"unknown tool {configured!r} (known: pip, {', '.join(CONDA_TOOLS)})")
    if kind == "venv":
        raise ValueError(f"a venv is administered with pip, not {configured}")
    if configured not in available:
        raise ValueError(f"{configured} is not installed for you")
    return configured, available[configured]


def spyder_specs(spyder_version: str) -> list[str]:
    """Everything ``--spyder VERSION`` installs: the spyder-kernels and the pins that avoid its known breaks."""
    specs = install_specs(spyder_version)
    if specs is None:
        raise ValueError(f"no known spyder-kernels series for Spyder {spyder_version[:20]!r}")
    return specs


class Operation:
    """One long administration task: an id, a kind, a target, a state, progress fanned out to subscribers."""

    def __init__(self, kind: str, target: str, *, on_progress: ProgressCallback | None = None) -> None:
        self.id = uuid.uuid4().hex
        self.kind = kind
        self.target = target
        self.state = OperationState.RUNNING
        self.error: str | None = None
        self.output: list[str] = []  # the tool's last lines when it failed
        self._history: deque[Progress] = deque(maxlen=1000)
        self._queues: list[asyncio.Queue[Progress | None]] = []
        self._on_progress = on_progress
        self._task: asyncio.Task[None] | None = None

    def start(self, work: Callable[[ProgressCallback], Awaitable[None]]) -> Operation:
        """Run ``work(progress)`` as a task in the running loop; return self at once."""
        self._task = asyncio.get_running_loop().create_task(self._run(work), name=f"env-op-{self.id}")
        return self

    def report(self, record: Progress) -> None:
        """The progress callback handed to the work: keep and fan out *record*."""
        self._history.append(record)
        for queue in self._queues:
            queue.put_nowait(record)
        if self._on_progress is not None:
            self._on_progress(record)

    async def records(self) -> AsyncIterator[Progress]:
        """Every record kept so far, then the new ones, until the operation ends."""
        queue: asyncio.Queue[Progress | None] = asyncio.Queue()
        for record in self._history:
            queue.put_nowait(record)
        if self.state is OperationState.RUNNING:
            self._queues.append(queue)
        else:
            queue.put_nowait(None)
        while (item := await queue.get()) is not None:
            yield item

    def cancel(self) -> None:
        """Ask the task to stop; the tool's process group is terminated and the state becomes cancelled."""
        if self._task is not None:
            self._task.cancel()

    async def wait(self) -> OperationState:
        """Wait for the end of the operation and return its final state."""
        if self._task is not None:
            await asyncio.wait({self._task})
        return self.state

    async def _run(self, work: Callable[[ProgressCallback], Awaitable[None]]) -> None:
        try:
            await work(self.report)
        except asyncio.CancelledError:
            self._finish(OperationState.CANCELLED, "cancelled")
            raise
        except Exception as exc:
            if not isinstance(exc, SSDError | ValueError | OSError):
                log.exception("environment operation %s (%s %s) failed", self.id, self.kind, self.target)
            self.output = exc.output if isinstance(exc, ToolFailed) else []
            self._finish(OperationState.FAILED, str(exc))
        else:
            self._finish(OperationState.DONE, None)

    def _finish(self, state: OperationState, error: str | None) -> None:
        self.state = state
        self.error = error
        self.report(Progress(state.value, error, 100.0 if state is OperationState.DONE else None))
        for queue in self._queues:
            queue.put_nowait(None)
        self._queues.clear()

"""Drive ssd.kernels.slurm as the user a test runs it as (the kernel worker's position): one JSON request
on stdin, one JSON answer on stdout. Run by tests/slurm/slurmtools.py with ``python -I``, dropped to the user.

Request: ``{"op": "start" | "status" | "cancel", "mode": "sync" | "async", "config": {...}, ...}``.
An ssd error is answered ``{"error": CODE, "message": TEXT}``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from ssd.errors import SSDError
from ssd.kernels.slurm import (
    JobSpec,
    SlurmCommands,
    SlurmConfig,
    SlurmRequest,
    async_cancel,
    async_job_status,
    async_submit,
    cancel,
    job_status,
    kernel_state,
    resolve,
    submit,
)


def start(request: dict[str, Any], commands: SlurmCommands, config: SlurmConfig) -> dict[str, Any]:
    """Check the resource options, then submit the command as a job."""
    resources = resolve(msgspec.convert(request["request"], SlurmRequest), config)
    spec = JobSpec(
        command=request["command"],
        resources=resources,
        workdir=Path(request["workdir"]),
        output=Path(request["output"]),
        environment=request.get("environment", {}),
    )
    job_id = submit(spec, commands) if request["mode"] == "sync" else asyncio.run(async_submit(spec, commands))
    return {"job_id": job_id}


def status(request: dict[str, Any], commands: SlurmCommands) -> dict[str, Any]:
    """The job's kernel state."""
    job_id = int(request["job_id"])
    found = (
        job_status(job_id, commands) if request["mode"] == "sync" else asyncio.run(async_job_status(job_id, commands))
    )
    return dataclasses.asdict(kernel_state(found))


def stop(request: dict[str, Any], commands: SlurmCommands) -> dict[str, Any]:
    """Cancel the job."""
    job_id = int(request["job_id"])
    if request["mode"] == "sync":
        cancel(job_id, commands)
    else:
        asyncio.run(async_cancel(job_id, commands))
    return {}


def answer(request: dict[str, Any]) -> dict[str, Any]:
    """Do what *request* asks, as this process's user."""
    config = msgspec.convert(request["config"], SlurmConfig)
    commands = SlurmCommands.from_config(config)
    if request["op"] == "start":
        return start(request, commands, config)
    if request["op"] == "status":
        return status(request, commands)
    return stop(request, commands)


def main() -> None:
    """Read the request, print the answer."""
    try:
        reply = answer(json.load(sys.stdin))
    except SSDError as exc:
        reply = {"error": exc.code, "message": exc.message}
    json.dump(reply, sys.stdout)


if __name__ == "__main__":
    main()

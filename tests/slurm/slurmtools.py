"""Running ssd.kernels.slurm as a real test user against the test cluster (through as_user.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from slurmcluster import SlurmCluster
from users import User

from ssd.kernels.slurm import SlurmConfig

DRIVER = Path(__file__).with_name("as_user.py")


@dataclass
class AsUser:
    """ssd's Slurm library as *user* runs it, with the host's ``[slurm]`` section *config*."""

    user: User
    cluster: SlurmCluster
    config: SlurmConfig
    mode: str = "async"
    extra_env: dict[str, str] = field(default_factory=dict)

    def call(self, op: str, **arguments: Any) -> dict[str, Any]:
        """One operation in a fresh process of the user's; its JSON answer."""
        request = {"op": op, "mode": self.mode, "config": msgspec.to_builtins(self.config), **arguments}
        done = subprocess.run(
            [sys.executable, "-I", str(DRIVER)],
            input=json.dumps(request),
            env={"PATH": "/usr/bin:/bin", "HOME": str(self.user.home), **self.extra_env},
            cwd=self.user.home,
            user=self.user.uid,
            group=self.user.gid,
            extra_groups=[],
            capture_output=True,
            text=True,
            timeout=45,
            check=False,
        )
        assert done.returncode == 0, f"as_user.py {op} exited {done.returncode}: {done.stderr}"
        answer: dict[str, Any] = json.loads(done.stdout)
        return answer

    def start(self, command: list[str], *, request: dict[str, Any] | None = None, **spec: Any) -> int:
        """Submit *command* as a job in the user's home (output to ~/job.out unless given); its job id."""
        spec.setdefault("workdir", str(self.user.home))
        spec.setdefault("output", str(self.user.home / "job.out"))
        answer = self.call("start", command=command, request=request or {}, **spec)
        assert "job_id" in answer, answer
        return int(answer["job_id"])

    def refusal(self, request: dict[str, Any]) -> dict[str, Any]:
        """Start with *request* expecting an error; the error answer."""
        answer = self.call(
            "start",
            command=["/bin/true"],
            request=request,
            workdir=str(self.user.home),
            output=str(self.user.home / "job.out"),
        )
        assert "error" in answer, f"expected a refusal of {request}, got {answer}"
        return answer

    def status(self, job_id: int) -> dict[str, Any]:
        """The job's kernel state (KernelJobState's fields)."""
        return self.call("status", job_id=job_id)

    def cancel(self, job_id: int) -> None:
        """scancel the job, as the user."""
        answer = self.call("cancel", job_id=job_id)
        assert answer == {}, answer

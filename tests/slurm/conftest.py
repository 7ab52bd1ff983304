"""The session's one-node Slurm (tests/slurmcluster.py), started once for every test in this folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slurmcluster import SlurmCluster, missing_commands, slurm_cluster
from support.ci import IN_CI, require_root


@pytest.fixture(scope="session")
def cluster() -> Iterator[SlurmCluster]:
    """A real Slurm (munged, slurmctld, slurmd) with its node idle; stopped, with its jobs, after the session."""
    require_root()
    missing = missing_commands()
    if missing:
        message = f"Slurm is not installed here (no {', '.join(missing)}); .ci/run installs slurm-wlm and munge"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    with slurm_cluster() as running:
        yield running

"""The session's one-node Slurm (tests/slurmcluster.py), started once for every test in this folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slurmcluster import SlurmCluster, cluster_for_tests


@pytest.fixture(scope="session")
def cluster() -> Iterator[SlurmCluster]:
    """A real Slurm (munged, slurmctld, slurmd) with its node idle; stopped, with its jobs, after the session."""
    with cluster_for_tests() as running:
        yield running

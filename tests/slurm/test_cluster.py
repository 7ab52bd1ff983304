"""The test cluster itself: it runs a job as a real user, and it is the cluster SLURM_CONF names."""

from __future__ import annotations

import pytest
from slurmcluster import SlurmCluster

pytestmark = pytest.mark.root


def test_the_node_is_the_machine(cluster: SlurmCluster) -> None:
    """The one node has this machine's CPUs and memory, is idle, and reports the test cluster's conf."""
    node = cluster.run("scontrol", "--oneliner", "show", "node", cluster.node)
    assert f"CPUTot={cluster.cpus} " in node
    assert f"RealMemory={cluster.memory_mib} " in node
    assert cluster.node_state() == "idle"
    assert cluster.started_in < 30

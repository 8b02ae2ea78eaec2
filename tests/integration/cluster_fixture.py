"""A three-node NATS cluster (JetStream, loopback, free ports) under the test's `tmp_path`,
stopped after the test, failures included.

Use it from a test module with `nats_cluster = cluster_fixture.nats_cluster` (pytest finds
fixtures among a module's attributes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from titan_exec_lab.harness.cluster import LocalCluster

CLUSTER_SIZE = 3


@pytest.fixture
async def nats_cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    """Three clustered nats-servers, formed (a JetStream meta leader all of them know)."""
    async with LocalCluster(tmp_path / "nats-cluster", size=CLUSTER_SIZE) as cluster:
        yield cluster

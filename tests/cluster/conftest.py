"""Fixtures of the development cluster's tests: a real ZooKeeper on loopback (one per
module), and the environment of an `ancho cluster` in the test's own folder and ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e import ancho

from ancho.cluster.ports import cluster_port, free_port
from ancho.cluster.zookeeper import ZooKeeperNode


@pytest.fixture(scope="module")
def zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperNode]:
    node = ZooKeeperNode(Path(tmp_path_factory.mktemp("zk")), port=free_port())
    node.start()
    yield node
    node.stop()


@pytest.fixture
def cluster_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """``ANCHO_CLUSTER_DIR`` and ``ANCHO_CLUSTER_PORTS`` of a cluster of the test's own,
    stopped afterwards whatever the test did."""
    env = {
        "ANCHO_CLUSTER_DIR": str(tmp_path / "cluster"),
        "ANCHO_CLUSTER_PORTS": f"{cluster_port()},{cluster_port()},{cluster_port()}",
    }
    yield env
    ancho("cluster", "stop", cwd=tmp_path, env=env)

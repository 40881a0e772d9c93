"""A real ZooKeeper on loopback for the development cluster's tests (one per module)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ancho.cluster.zookeeper import ZooKeeperNode


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperNode]:
    node = ZooKeeperNode(Path(tmp_path_factory.mktemp("zk")), port=free_port())
    node.start()
    yield node
    node.stop()

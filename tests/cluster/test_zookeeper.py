"""The development cluster's ZooKeeper: a real ZooKeeper JVM on loopback, driven by kazoo
(the client pymesos uses to find the leading Mesos master)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from ancho.cluster.ports import free_port
from ancho.cluster.zookeeper import ZooKeeperNode, four_letter_word
from ancho.errors import ClusterError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_zookeeper_serves_on_loopback_keeps_data_across_a_kill_and_leaves_no_process(
    tmp_path: Path,
) -> None:
    node = ZooKeeperNode(tmp_path / "zk", port=free_port())
    node.start()
    try:
        assert node.pid is not None and _alive(node.pid)
        assert "Mode: standalone" in four_letter_word((node.host, node.port), "srvr")
        client = KazooClient(hosts=node.address, timeout=10)
        client.start(timeout=10)
        client.create("/mesos/kept", b"registry", makepath=True)
        client.create("/mesos/json.info_", b"{}", ephemeral=True, sequence=True)
        client.stop()
        client.close()
        node.kill()
        assert not _alive(node.pid)
        assert four_letter_word((node.host, node.port), "ruok") == ""
        node.start()  # the same folder: persistent znodes survive, ephemeral ones do not
        client = KazooClient(hosts=node.address, timeout=10)
        client.start(timeout=10)
        assert client.get("/mesos/kept")[0] == b"registry"
        assert client.get_children("/mesos") == ["kept"]
        client.stop()
        client.close()
    finally:
        node.stop()
    assert node.pid is not None and not _alive(node.pid)


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    first = ZooKeeperNode(tmp_path / "a", port=free_port())
    first.start()
    try:
        with pytest.raises(ClusterError, match=f"already answers ZooKeeper on {first.address}"):
            ZooKeeperNode(tmp_path / "b", port=first.port).start()
    finally:
        first.stop()

"""Partitions made in the kernel with iptables between loopback endpoints, then healed."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator

import pytest

from ancho.cluster.partition import Endpoint, heal, partition, partitioned
from ancho.cluster.ports import free_port
from ancho.errors import ClusterError


class EchoServer:
    def __init__(self, host: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, free_port(host)))
        self.sock.listen()
        self.endpoint = Endpoint(host, self.sock.getsockname()[1])
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(100):
                conn.sendall(data)


def talks(source: str, to: Endpoint, timeout: float = 0.5) -> bool:
    try:
        with socket.socket() as sock:
            sock.settimeout(timeout)
            sock.bind((source, 0))
            sock.connect((to.host, to.port))
            sock.sendall(b"ping")
            return sock.recv(4) == b"ping"
    except OSError:
        return False


@pytest.fixture
def tag() -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    heal(name)


def test_a_partition_drops_both_ways_between_its_sides_only_and_heals(tag: str) -> None:
    agent, master = EchoServer("127.0.0.32"), EchoServer("127.0.0.31")
    assert talks("127.0.0.32", master.endpoint) and talks("127.0.0.31", agent.endpoint)
    established = socket.create_connection(
        (master.endpoint.host, master.endpoint.port), source_address=("127.0.0.32", 0)
    )
    established.settimeout(0.5)

    partition(tag, [agent.endpoint], [master.endpoint])
    assert partitioned(tag)
    assert not talks("127.0.0.32", master.endpoint)  # the agent cannot reach the master
    assert not talks("127.0.0.31", agent.endpoint)  # nor the master the agent
    assert talks("127.0.0.33", master.endpoint)  # others still can
    established.sendall(b"ping")  # an open connection goes silent: dropped, not reset
    with pytest.raises(TimeoutError):
        established.recv(4)

    assert heal(tag) == 4  # both directions of connections each way
    assert not partitioned(tag)
    assert talks("127.0.0.32", master.endpoint) and talks("127.0.0.31", agent.endpoint)
    established.close()


def test_healing_one_partition_leaves_another(tag: str) -> None:
    a, b, c = EchoServer("127.0.0.41"), EchoServer("127.0.0.42"), EchoServer("127.0.0.43")
    other = f"{tag}-other"
    try:
        partition(tag, [a.endpoint], [b.endpoint])
        partition(other, [a.endpoint], [c.endpoint])
        heal(tag)
        assert talks("127.0.0.41", b.endpoint)
        assert not talks("127.0.0.41", c.endpoint)
    finally:
        heal(other)
    assert talks("127.0.0.41", c.endpoint)


def test_only_loopback_endpoints() -> None:
    with pytest.raises(ClusterError, match="only between loopback addresses"):
        Endpoint.parse("10.0.0.1:5050")
    assert Endpoint.parse("127.0.0.11:5051") == Endpoint("127.0.0.11", 5051)

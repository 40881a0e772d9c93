"""Shared fixtures: the real Cassandra (started by the project's own script)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def cassandra_admin_url() -> str:
    """Start (or find running) the project's Cassandra 5.0; its admin store URL."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "cassandra_node.py"), "start"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"Cassandra did not start:\n{proc.stderr[-3000:]}", pytrace=False)
    return (REPO / ".ancho" / "cassandra.url").read_text().strip()


@pytest.fixture
def cassandra_url(cassandra_admin_url: str) -> Iterator[str]:
    """The admin URL on a fresh keyspace of its own (dropped afterwards)."""
    from ancho.store.cassandra import CassandraURL

    keyspace = f"t_{uuid.uuid4().hex[:12]}"
    config = CassandraURL.parse(cassandra_admin_url)
    url = config.with_credentials(config.username or "", config.password or "", keyspace)
    yield url
    from ancho.store import open_store

    store = open_store(cassandra_admin_url)
    try:
        store.session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")  # type: ignore[attr-defined]
    finally:
        store.close()


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP listener on loopback that model code must not reach."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as server:
        server.listen(16)
        yield server.getsockname()[1]


@pytest.fixture(scope="session")
def executor_image() -> str:
    """Start the engine and build the images (both idempotent; rebuilds reuse layers)."""
    for script in ("scripts/docker_engine.sh", "docker/build-images.sh"):
        proc = subprocess.run(["bash", str(REPO / script)], cwd=REPO, capture_output=True,
                              text=True, check=False)  # fmt: skip
        if proc.returncode != 0:
            pytest.fail(f"{script} failed:\n{proc.stderr[-3000:]}", pytrace=False)
    return "ancho/executor:latest"

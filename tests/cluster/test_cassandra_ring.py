"""`ancho cluster start --cassandra 3`: a real three-node Cassandra ring on loopback that a
run on the cluster stores into, whose keyspaces (``system_auth`` included) hold three
copies, whose writes go at QUORUM (one node down loses nothing, two refuse the write),
and whose nodes `kill --restart` brings back with their data."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from e2e import EXAMPLES, ancho, run_id_of

from ancho.cluster.supervisor import alive, processes_under
from ancho.errors import StoreError
from ancho.results import SequenceResult
from ancho.store.base import RunRecord
from ancho.store.cassandra import CassandraStore


def _replicas(store: CassandraStore, keyspace: str) -> int:
    row = store.session.execute(
        "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s", (keyspace,)
    ).one()
    return int(row.replication["replication_factor"])


def _write(store: CassandraStore, run_id: str, sequences: range, *, patient: bool = True) -> None:
    """Write rows; ``patient`` retries timeouts for up to a minute, as executors do (a
    loaded machine can keep a QUORUM write past Cassandra's 2 s write timeout)."""
    rows = [SequenceResult(i, "ok", {"x": float(i)}, None, 1, 0.0) for i in sequences]
    deadline = time.monotonic() + (60 if patient else 0)
    while True:
        try:
            store.write_results(run_id, rows)
            return
        except StoreError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _create(store: CassandraStore, run: RunRecord) -> None:
    """Create a run, retrying for up to a minute while the ring has not yet convicted a
    node just killed: the insert is a Paxos write (IF NOT EXISTS) whose prepare round may
    wait on the dead node. A timed-out attempt may still have been applied, so a retry
    that finds the run finds it as written."""
    deadline = time.monotonic() + 60
    while True:
        try:
            store.create_run(run)
            return
        except StoreError as exc:
            if "exists already" in str(exc):
                assert store.get_run(run.id).sequences == run.sequences
                return
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _connect(url: str) -> CassandraStore:
    """A store on the ring, retried while the live nodes have not yet convicted a node
    just killed (their failure detector takes seconds; until then a login's QUORUM read
    of the role may wait on the dead node)."""
    deadline = time.monotonic() + 90
    while True:
        try:
            return CassandraStore(url)
        except StoreError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _kill(tmp_path: Path, env: dict[str, str], address: str, *, restart: bool = False) -> Any:
    flags = ["--restart"] if restart else []
    done = ancho("cluster", "kill", "cassandra", address, *flags, cwd=tmp_path, env=env)
    assert done.code == 0, done.stderr
    return done.json()


def test_a_three_node_ring_replicates_writes_at_quorum_and_recovers(
    cluster_env: dict[str, str], tmp_path: Path
) -> None:
    started = ancho("cluster", "start", "--agents", "1", "--cpus", "2", "--mem-mb", "1024",
                    "--cassandra", "3", cwd=tmp_path, env=cluster_env)  # fmt: skip
    assert started.code == 0, started.stderr
    status = started.json()
    ring = status["cassandra"]
    addresses = [n["address"] for n in ring["nodes"]]
    assert addresses == ["127.0.0.21:9042", "127.0.0.22:9042", "127.0.0.23:9042"]
    assert all(n["pid"] for n in ring["nodes"])
    assert "@127.0.0.21,127.0.0.22,127.0.0.23:9042/" in ring["url"]

    # A run on the cluster stores into the ring.
    run = ancho("run", str(EXAMPLES / "pi"), "--sequences", "40", "--seed", "3",
                "-p", "samples=100", "--master", status["master"], "--store", ring["url"],
                cwd=tmp_path, env=cluster_env)  # fmt: skip
    assert run.code == 0, run.stderr
    admin = CassandraStore(ring["url"])
    try:
        assert admin.count_results(run_id_of(run)).ok == 40
        assert _replicas(admin, "ancho") == 3
        assert _replicas(admin, "system_auth") == 3
        user_url = admin.provision_user("ringuser", "ring-secret-1")
        assert _replicas(admin, "ancho_ringuser") == 3
    finally:
        admin.close()

    # One node down (the seed, where the roles were first written): the user still
    # logs in, and QUORUM writes and reads still succeed.
    _kill(tmp_path, cluster_env, "127.0.0.21")
    user = _connect(user_url)
    try:
        _create(user, RunRecord(id="r1", name="ring", spec={}, seed=1, sequences=300))
        _write(user, "r1", range(0, 200))
        assert user.count_results("r1").ok == 200

        # Two of three down: a QUORUM write is refused, not silently stored on one node.
        _kill(tmp_path, cluster_env, "127.0.0.22")
        with pytest.raises(StoreError):
            _write(user, "r1", range(200, 300), patient=False)
    finally:
        user.close()

    # Restarted with their old data, the nodes serve every row written with one down.
    restarted = [
        _kill(tmp_path, cluster_env, a, restart=True) for a in ("127.0.0.21", "127.0.0.22")
    ]
    assert all(r["restarted"] for r in restarted)
    user = _connect(user_url)
    try:
        _write(user, "r1", range(200, 300))  # retried while the driver sees them up
        assert user.count_results("r1").ok == 300
    finally:
        user.close()

    pids = [n["pid"] for n in ancho("cluster", "status", cwd=tmp_path,
                                    env=cluster_env).json()["cassandra"]["nodes"]]  # fmt: skip
    assert all(pids)
    stopped = ancho("cluster", "stop", cwd=tmp_path, env=cluster_env)
    assert stopped.code == 0, stopped.stderr
    assert not [p for p in pids if alive(p)]
    assert processes_under(Path(cluster_env["ANCHO_CLUSTER_DIR"])) == []

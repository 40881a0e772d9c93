"""Results in a real Cassandra 5.0: users and isolation, cross-store determinism,
partition layout, driver errors, schema versions, and Cassandra restarting mid-run.

The store contract itself runs against Cassandra in test_store.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from e2e import ANCHO, EXAMPLES, MODELS, REPO, ancho, run_id_of, write_spec

from ancho.errors import StoreError
from ancho.model import LoadedModel, OutputNames, run_sequences
from ancho.results import SequenceResult
from ancho.store import RunRecord, open_store
from ancho.store.cassandra import BUCKET, CassandraStore, CassandraURL, replication_factor
from cassandra import ConsistencyLevel  # type: ignore[attr-defined]

pytestmark = pytest.mark.slow
NODE = [sys.executable, str(REPO / "scripts" / "cassandra_node.py")]


def _user(admin_url: str, tmp_path: Path, prefix: str = "u") -> dict[str, str]:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    out = ancho("user", "add", name, "--store", admin_url, cwd=tmp_path)
    assert out.code == 0, out.stderr
    user: dict[str, str] = out.json()
    return user


def test_user_add_gives_a_keyspace_and_role_of_its_own(
    cassandra_admin_url: str, tmp_path: Path
) -> None:
    alice = _user(cassandra_admin_url, tmp_path, "alice")
    bob = _user(cassandra_admin_url, tmp_path, "bob")
    assert set(alice) == {"user", "store", "token"} and len(alice["token"]) >= 40
    a, b = CassandraURL.parse(alice["store"]), CassandraURL.parse(bob["store"])
    assert a.username == alice["user"] and a.keyspace == f"ancho_{alice['user']}"
    assert a.password != CassandraURL.parse(cassandra_admin_url).password

    bob_store = open_store(bob["store"])
    # One node here: one copy, and writes at QUORUM (of one) as on a ring.
    replication = bob_store.session.execute(  # type: ignore[attr-defined]
        "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s", (b.keyspace,)
    ).one()
    assert replication.replication["replication_factor"] == "1"
    profile = bob_store.session.cluster.profile_manager.default  # type: ignore[attr-defined]
    assert profile.consistency_level == ConsistencyLevel.QUORUM
    bob_store.create_run(RunRecord("secret", "s", {}, 1, 3))
    bob_store.write_results("secret", [SequenceResult(0, "ok", {"x": 1.5})])
    bob_store.close()

    # Alice's role on Bob's keyspace: refused, clearly, and no row leaks.
    trespass = a.with_credentials(a.username or "", a.password or "", b.keyspace)
    with pytest.raises(StoreError, match=r"not authorised|cannot"):
        store = open_store(trespass)
        list(store.iter_results("secret"))
    listed = ancho("results", "secret", "--store", trespass, cwd=tmp_path)
    assert listed.code == 2 and "1.5" not in listed.stdout + listed.stderr
    assert "Traceback" not in listed.stderr and "not authorised" in listed.stderr
    # Her own keyspace works, and holds nothing of Bob's.
    own = open_store(alice["store"])
    assert own.list_runs() == []
    own.close()
    users = ancho("user", "list", "--store", cassandra_admin_url, cwd=tmp_path).jsonl()
    assert {alice["user"], bob["user"]} <= {u["user"] for u in users}
    assert all(":***@" in u["store"] for u in users)  # no secrets listed


def test_rings_of_three_or_more_keep_three_copies() -> None:
    assert [replication_factor(n) for n in (1, 2, 3, 4, 7)] == [1, 2, 3, 3, 3]


def test_revoked_user_cannot_log_in(cassandra_admin_url: str, tmp_path: Path) -> None:
    carol = _user(cassandra_admin_url, tmp_path, "carol")
    revoked = ancho("user", "revoke", carol["user"], "--store", cassandra_admin_url, cwd=tmp_path)
    assert revoked.code == 0
    refused = ancho("list", "--store", carol["store"], cwd=tmp_path)
    assert refused.code == 2 and "Traceback" not in refused.stderr


def test_same_seed_same_results_in_sqlite_and_cassandra(
    cassandra_admin_url: str, tmp_path: Path
) -> None:
    user = _user(cassandra_admin_url, tmp_path)
    args = ["run", str(EXAMPLES / "option"), "--sequences", "3000", "--json"]
    lite = ancho(*args, cwd=tmp_path)
    cass = ancho(*args, "--store", user["store"], cwd=tmp_path)
    assert lite.code == 0 and cass.code == 0, lite.stderr + cass.stderr
    rows_lite = ancho("results", run_id_of(lite), cwd=tmp_path).stdout
    rows_cass = ancho("results", run_id_of(cass), "--store", user["store"], cwd=tmp_path).stdout
    assert rows_lite == rows_cass and len(rows_lite.splitlines()) == 3000
    a, b = lite.json(), cass.json()
    for name, stats in a["outputs"].items():
        for key, value in stats.items():
            if key == "quantiles":
                assert b["outputs"][name][key] == value
            else:
                assert b["outputs"][name][key] == pytest.approx(value, rel=1e-9), (name, key)
    assert b["custom"]["price"] == pytest.approx(a["custom"]["price"], rel=1e-12)


def test_results_partitions_stay_bounded(cassandra_url: str) -> None:
    store = open_store(cassandra_url)
    assert isinstance(store, CassandraStore)
    n = 2 * BUCKET + 4321
    store.create_run(RunRecord("big", "big", {}, 1, n))
    for lo in range(0, n, 5000):
        rows = [SequenceResult(i, "ok", {"x": i * 0.5}) for i in range(lo, min(lo + 5000, n))]
        store.write_results("big", rows)
    ks = store.config.keyspace
    for bucket in range(3):
        row = store.session.execute(
            f"SELECT count(*) AS n, min(sequence) AS lo, max(sequence) AS hi FROM {ks}.results"
            " WHERE run_id = 'big' AND bucket = %s",
            (bucket,),
        ).one()
        expected = min(BUCKET, n - bucket * BUCKET)
        assert (row.n, row.lo, row.hi) == (
            expected,
            bucket * BUCKET,
            bucket * BUCKET + expected - 1,
        )
    # Nothing outside the three buckets; each partition ~10,000 rows of ~60 bytes < 1 MB.
    keys = store.session.execute(f"SELECT DISTINCT run_id, bucket FROM {ks}.results")
    assert sorted(k.bucket for k in keys if k.run_id == "big") == [0, 1, 2]
    assert [r.sequence for r in store.iter_results("big")] == list(range(n))
    store.close()


def test_driver_errors_are_clear(cassandra_admin_url: str, tmp_path: Path) -> None:
    c = CassandraURL.parse(cassandra_admin_url)
    wrong = c.with_credentials(c.username or "", "not-the-password", c.keyspace)
    out = ancho("list", "--store", wrong, cwd=tmp_path)
    assert out.code == 2 and "authentication failed" in out.stderr
    assert "not-the-password" not in out.stderr and "Traceback" not in out.stderr
    down = ancho("list", "--store", "cassandra://u:p@127.0.0.1:1/ks", cwd=tmp_path)
    assert down.code == 2 and "cannot reach Cassandra" in down.stderr
    bad = ancho("list", "--store", "cassandra://127.0.0.1/Bad-Name", cwd=tmp_path)
    assert bad.code == 2 and "keyspace" in bad.stderr


def test_schema_versions(cassandra_admin_url: str, tmp_path: Path) -> None:
    user = _user(cassandra_admin_url, tmp_path)
    ks = CassandraURL.parse(user["store"]).keyspace
    admin = open_store(cassandra_admin_url)
    assert isinstance(admin, CassandraStore)
    # A table missing, and a role that may not create it: a clear refusal.
    admin.session.execute(f"DROP TABLE {ks}.summaries")
    with pytest.raises(StoreError, match="summaries is missing and this role cannot create"):
        open_store(user["store"])
    admin_on_user_ks = CassandraURL.parse(cassandra_admin_url)
    url = admin_on_user_ks.with_credentials(
        admin_on_user_ks.username or "", admin_on_user_ks.password or "", ks
    )
    open_store(url).close()  # an admin with this Ancho creates what is missing
    open_store(user["store"]).close()
    # A newer schema than this Ancho knows: refused, with the reason.
    admin.session.execute(f"UPDATE {ks}.meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 99, newer"):
        open_store(user["store"])
    admin.close()


def _node(command: str) -> None:
    proc = subprocess.run([*NODE, command], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def _expected(n: int, seed: int) -> list[dict[str, float]]:
    model = LoadedModel.load(MODELS / "slow", "model:simulate", {"sleep_s": 0})
    return [r.outputs for r in run_sequences(model, seed, 0, n, 1, OutputNames())]


def _start_slow_run(user: dict[str, str], tmp_path: Path, n: int, env: dict[str, str]):  # type: ignore[no-untyped-def]
    spec = {
        "model": {"source": str(MODELS / "slow"), "entrypoint": "model:simulate"},
        "parameters": {"sleep_s": 0.01},
        "sequences": n,
        "seed": 8,
    }
    path = write_spec(tmp_path, spec)
    import os

    proc = subprocess.Popen([ANCHO, "run", str(path), "--store", user["store"], "--json"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **env})  # fmt: skip
    store = open_store(user["store"])
    deadline = time.monotonic() + 90
    while not [r for r in store.list_runs() if r.ok > 100]:
        assert time.monotonic() < deadline and proc.poll() is None, "no progress"
        time.sleep(0.2)
    run_id = store.list_runs()[0].id
    store.close()
    return proc, run_id


def test_cassandra_restarted_mid_run(cassandra_admin_url: str, tmp_path: Path) -> None:
    user = _user(cassandra_admin_url, tmp_path)
    n = 1500
    proc, run_id = _start_slow_run(user, tmp_path, n, {})
    _node("stop")
    time.sleep(3)
    _node("start")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    doc = json.loads(out)
    assert doc["state"] == "FINISHED" and doc["ok"] == n
    store = open_store(user["store"])
    rows = list(store.iter_results(run_id))
    assert [r.sequence for r in rows] == list(range(n))  # each exactly once
    assert [r.outputs for r in rows] == _expected(n, 8)
    store.close()


def test_cassandra_that_never_comes_back(cassandra_admin_url: str, tmp_path: Path) -> None:
    user = _user(cassandra_admin_url, tmp_path)
    n = 100_000
    proc, run_id = _start_slow_run(user, tmp_path, n, {"ANCHO_STORE_PATIENCE_S": "15"})
    _node("stop")
    try:
        _, err = proc.communicate(timeout=240)
    finally:
        _node("start")
    assert proc.returncode == 2, err[-3000:]
    assert "abandoned" in err and "Traceback" not in err
    store = open_store(user["store"])
    rows = list(store.iter_results(run_id, 0, n))
    assert len(rows) > 100  # what was stored before is still there, intact
    expected = _expected(rows[-1].sequence + 1, 8)
    assert all(r.outputs == expected[r.sequence] for r in rows)
    store.close()

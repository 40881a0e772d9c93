"""A run survives what a cluster does to a framework, and loses nothing.

Real pieces: ``ancho cluster`` (ZooKeeper, 3 embedded masters, 3 agents as processes
on their own loopback addresses), two ``ancho server --zk`` on it (one leads, one
stands by), Ancho's executors, and Cassandra: the project's node for most faults, the
cluster's own 3-node ring (replication factor 3, QUORUM) for the Cassandra-node fault.
Each test submits the same deterministic run, injects one fault of one kind in the
middle of it (``ancho.cluster.nemesis``), and checks that the run ends FINISHED, that
``ancho results RUN --format jsonl`` and the summary are those of an undisturbed run
with the same seed (so every sequence is stored exactly once, with its value), and
that no executor is left behind. The 20-fault combined run is ``bench/faults.py``'s.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e import MODELS

from ancho.client import Client
from ancho.cluster.nemesis import KINDS, Fault, FaultWorld
from ancho.store import open_store
from ancho.store.cassandra import CassandraURL

pytestmark = pytest.mark.slow

SEQUENCES, SEED, SLEEP_S = 300, 21, 0.04
RING_KINDS = ("cassandra",)  # on the ring's world; every other kind on the node's


@dataclass(frozen=True)
class Baseline:
    sha256: str
    summary: str


def _with_baseline(world: FaultWorld) -> Baseline:
    run_id = world.submit(MODELS / "slow", SEQUENCES, SEED, sleep_s=SLEEP_S)
    undisturbed = world.wait(run_id, 180)
    assert undisturbed["state"] == "FINISHED", undisturbed
    return Baseline(world.results_sha256(run_id), world.summary_outputs(run_id))


@pytest.fixture(scope="module")
def node_world(
    tmp_path_factory: pytest.TempPathFactory, cassandra_admin_url: str
) -> Iterator[tuple[FaultWorld, Baseline]]:
    """The world on the project's Cassandra node, in keyspaces of its own."""
    tag = uuid.uuid4().hex[:8]
    config = CassandraURL.parse(cassandra_admin_url)
    url = config.with_credentials(config.username or "", config.password or "", f"t_{tag}")
    made = FaultWorld(tmp_path_factory.mktemp("faults"), store_url=url, user=f"nemo_{tag}")
    try:
        made.start()
        yield made, _with_baseline(made)
    finally:
        made.stop()
        admin = open_store(cassandra_admin_url)
        for keyspace in (f"t_{tag}", f"ancho_nemo_{tag}"):
            admin.session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")  # type: ignore[attr-defined]
        admin.close()


@pytest.fixture(scope="module")
def ring_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FaultWorld, Baseline]]:
    """The world on the cluster's own 3-node ring."""
    made = FaultWorld(tmp_path_factory.mktemp("faults-ring"), cassandra=3)
    try:
        made.start()
        yield made, _with_baseline(made)
    finally:
        made.stop()


def _progress_after(world: FaultWorld, run_id: str, ok: int, timeout_s: float) -> float | None:
    """Seconds until the run stores more than ``ok`` results (None: it ended first)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        run = world.stored(run_id)
        if run["ok"] > ok:
            return time.monotonic() - start
        if run["done"]:
            return None
        time.sleep(0.1)
    raise AssertionError(f"no progress {timeout_s:g} s after the fault")


def _supervised(w: FaultWorld) -> None:
    """The world as a supervisor keeps it: masters, servers and agents that exited are
    started again (a server whose ZooKeeper session expired late exits late), a server
    leads, every agent is registered."""
    w.restart_dead()
    w.wait_leader()
    w.cluster.wait_registered(w.agents)


def _survives(world: FaultWorld, baseline: Baseline, kind: str) -> None:
    w = world
    _supervised(w)
    run_id = w.submit(MODELS / "slow", SEQUENCES, SEED, sleep_s=SLEEP_S)
    deadline = time.monotonic() + 60
    while w.stored(run_id)["ok"] < SEQUENCES // 5:
        assert time.monotonic() < deadline, w.stored(run_id)
        time.sleep(0.1)
    assert w.executors(), "executors run in the agents' sandboxes (the leftover check sees them)"
    ok_before = w.stored(run_id)["ok"]
    injected = w.inject(Fault(kind, 0.0), run_id)
    assert not injected.target.startswith("no "), injected.target
    recovered = _progress_after(w, run_id, ok_before, 120)
    final = w.wait(run_id, 240)
    print(f"{kind} ({injected.target}): progress again after "
          f"{'-' if recovered is None else f'{recovered:.1f} s'}, "
          f"{w.relaunched(run_id)} sequences relaunched")  # fmt: skip
    assert final["state"] == "FINISHED", final
    counts = w.store().count_results(run_id)
    assert (counts.ok, counts.failed) == (SEQUENCES, 0)
    assert w.results_sha256(run_id) == baseline.sha256
    assert w.summary_outputs(run_id) == baseline.summary
    deadline = time.monotonic() + 30
    while w.executors():
        assert time.monotonic() < deadline, f"left behind: {w.executors()}"
        time.sleep(0.2)
    assert w.leader() is not None, "a server leads again"
    w.restart_dead()  # the world as the next test expects it


@pytest.mark.parametrize("kind", [k for k in KINDS if k not in RING_KINDS])
def test_a_run_survives_a_fault_and_stores_every_sequence_once(
    node_world: tuple[FaultWorld, Baseline], kind: str
) -> None:
    _survives(*node_world, kind)


@pytest.mark.parametrize("kind", RING_KINDS)
def test_a_run_survives_a_cassandra_node_down_and_stores_every_sequence_once(
    ring_world: tuple[FaultWorld, Baseline], kind: str
) -> None:
    _survives(*ring_world, kind)


def test_a_standby_server_serves_submits_and_kills_for_the_leader(
    node_world: tuple[FaultWorld, Baseline], tmp_path: Path
) -> None:
    """Any server takes any request: a run submitted to the standby is scheduled by
    the leader, and a kill sent to the standby reaches it."""
    w, baseline = node_world
    _supervised(w)
    leader = w.leader()
    assert leader is not None
    standby_url = next(url for slot, (_, url) in w.running.items() if slot != leader)
    assert w.role(standby_url) == "standby"
    client = Client(standby_url, w.token)
    source = client.upload_model(MODELS / "slow")
    spec = {"model": {"source": source, "entrypoint": "model:simulate"},
            "parameters": {"sleep_s": SLEEP_S}, "sequences": SEQUENCES, "seed": SEED,
            "resources": {"cpus": 1, "mem_mb": 256}}  # fmt: skip
    finished = client.submit(spec)["id"]
    assert w.wait(finished, 180)["state"] == "FINISHED"
    assert w.results_sha256(finished) == baseline.sha256
    killed = client.submit({**spec, "parameters": {"sleep_s": 1.0}})["id"]
    deadline = time.monotonic() + 60
    while w.stored(killed)["state"] != "RUNNING":
        assert time.monotonic() < deadline, w.stored(killed)
        time.sleep(0.1)
    client.kill(killed)
    assert w.wait(killed, 60)["state"] == "KILLED"

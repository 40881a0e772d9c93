"""A run survives what a cluster does to a framework, and loses nothing.

Real pieces: ``ancho cluster`` (ZooKeeper, 3 embedded masters, 3 agents as processes
on their own loopback addresses), ``ancho server`` on it, Ancho's executors, SQLite.
Each test submits the same deterministic run, injects one fault of each kind in the
middle of it (``ancho.cluster.nemesis``), and checks that the run ends FINISHED, that
``ancho results RUN --format jsonl`` and the summary are those of an undisturbed run
with the same seed (so every sequence is stored exactly once, with its value), and
that no executor is left behind. The 20-fault combined run is ``bench/faults.py``'s.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from e2e import MODELS

from ancho.cluster.nemesis import KINDS, Fault, FaultWorld
from ancho.store import open_store

pytestmark = pytest.mark.slow

SEQUENCES, SEED, SLEEP_S = 300, 21, 0.04


@dataclass(frozen=True)
class Baseline:
    sha256: str
    summary: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FaultWorld, Baseline]]:
    made = FaultWorld(tmp_path_factory.mktemp("faults"))
    try:
        made.start()
        run_id = made.submit(MODELS / "slow", SEQUENCES, SEED, sleep_s=SLEEP_S)
        undisturbed = made.wait(run_id, 180)
        assert undisturbed["state"] == "FINISHED", undisturbed
        yield made, Baseline(made.results_sha256(run_id), made.summary_outputs(run_id))
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


@pytest.mark.parametrize("kind", KINDS)
def test_a_run_survives_a_fault_and_stores_every_sequence_once(
    world: tuple[FaultWorld, Baseline], kind: str
) -> None:
    w, baseline = world
    w.cluster.wait_registered(w.agents)
    run_id = w.submit(MODELS / "slow", SEQUENCES, SEED, sleep_s=SLEEP_S)
    deadline = time.monotonic() + 60
    while w.stored(run_id)["ok"] < SEQUENCES // 5:
        assert time.monotonic() < deadline, w.stored(run_id)
        time.sleep(0.1)
    assert w.executors(), "executors run in the agents' sandboxes (the leftover check sees them)"
    ok_before = w.stored(run_id)["ok"]
    injected = w.inject(Fault(kind, 0.0), run_id)
    recovered = _progress_after(w, run_id, ok_before, 120)
    final = w.wait(run_id, 240)
    print(f"{kind} ({injected.target}): progress again after "
          f"{'-' if recovered is None else f'{recovered:.1f} s'}, "
          f"{w.relaunched(run_id)} sequences relaunched")  # fmt: skip
    assert final["state"] == "FINISHED", final
    counts = open_store(w.store_url).count_results(run_id)
    assert (counts.ok, counts.failed) == (SEQUENCES, 0)
    assert w.results_sha256(run_id) == baseline.sha256
    assert w.summary_outputs(run_id) == baseline.summary
    deadline = time.monotonic() + 30
    while w.executors():
        assert time.monotonic() < deadline, f"left behind: {w.executors()}"
        time.sleep(0.2)
    w.restart_dead_agents()  # the world as the next test expects it

"""A scheduler restarted in the middle of a run re-subscribes, reconciles and carries on.

Real pieces: the embedded Mesos cluster, pymesos, executor processes, SQLite, Spark.
The first scheduler stops with failover (its executors keep running); a second one,
built afresh from the store, re-subscribes with the stored FrameworkID and finishes
the run. Every sequence is stored exactly once, identical to an uninterrupted run.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from e2e import MODELS

from ancho.embedded import EmbeddedCluster
from ancho.model import LoadedModel, OutputNames, run_sequences
from ancho.runner import executor_command, new_run
from ancho.spec import spec_from_data
from ancho.store import open_store
from scheduler.framework import ExecutorLaunch
from scheduler.service import SchedulerService
from scheduler.state import SchedulerConfig
from scheduler.summary_job import SummaryJob

pytestmark = pytest.mark.slow


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.parametrize("gap_s", [0.0, 3.0], ids=["at-once", "after-the-batches-ended"])
def test_restarted_scheduler_resumes_the_run(tmp_path: Path, gap_s: float) -> None:
    """``after-the-batches-ended``: the batches in flight end while no scheduler is
    there; their updates, sent again at the new subscription, must end those batches
    (not look like a stranger's and have them reported gone and run again)."""
    store = open_store(f"sqlite:///{tmp_path / 'ancho.db'}")
    spec = spec_from_data(
        {
            "model": {"source": str(MODELS / "slow"), "entrypoint": "model:simulate"},
            "parameters": {"sleep_s": 0.01},
            "sequences": 600,
            "seed": 3,
        }
    )
    run = new_run(spec)
    store.create_run(run)
    launch = ExecutorLaunch(executor_command(), {"ANCHO_CACHE_DIR": str(tmp_path / "cache")},
                            lambda _rid: store.url)  # fmt: skip
    job = SummaryJob(store, work_dir=tmp_path)
    config = SchedulerConfig(fixed_batch=50)
    with EmbeddedCluster(tmp_path / "mesos", cpus=2) as cluster:
        master = cluster.start()
        first = SchedulerService(store, master, launch, job, config, failover_timeout_s=60)
        first.start()
        framework_id = first.framework.framework_id
        first.submit(run)
        _wait(lambda: store.get_run(run.id).ok >= 100, 60, "progress before the restart")
        first.stop(failover=True)
        in_flight = store.list_batches(run.id)
        assert in_flight, "batches in flight were persisted"
        assert store.get_run(run.id).state in ("STAGING", "RUNNING")
        time.sleep(gap_s)  # 50 sequences of 10 ms: every batch in flight ends meanwhile

        second = SchedulerService(store, master, launch, job, config, failover_timeout_s=60)
        second.start(resuming=True)
        try:
            assert second.framework.framework_id == framework_id  # re-subscribed, same id
            assert second.resume_active() == [run.id]
            _wait(lambda: store.get_run(run.id).done, 120, "the run to finish")
        finally:
            second.stop(failover=False)

    job.close()
    final = store.get_run(run.id)
    assert final.state == "FINISHED", final.reason
    stored = list(store.iter_results(run.id))
    assert [r.sequence for r in stored] == list(range(600))
    model = LoadedModel.load(MODELS / "slow", "model:simulate", {"sleep_s": 0})
    expected = list(run_sequences(model, 3, 0, 600, 1, OutputNames()))
    assert [r.outputs for r in stored] == [r.outputs for r in expected]
    summary = store.get_summary(run.id)
    assert summary is not None and summary["outputs"]["u"]["count"] == 600
    assert store.list_batches(run.id) == []
    again = [e.message for e in store.iter_events(run.id) if "runs again" in e.message]
    assert again == [], again

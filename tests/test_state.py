"""The pure scheduler state machine: events in, commands out (no network, no threads)."""

from __future__ import annotations

import itertools
import json
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import pytest

from ancho.messages import BatchReport
from ancho.partials import BlockPartial, RunPartials
from scheduler.events import (
    AgentLost,
    CheckStored,
    Command,
    CommandFailed,
    Decline,
    Event,
    ExecutorLost,
    ForgetBatch,
    FrameworkRemoved,
    KillRun,
    KillTask,
    Launch,
    Log,
    Offer,
    Offers,
    PutLive,
    Range,
    Reconcile,
    Revive,
    RunInfo,
    SaveBatch,
    StartSummary,
    StopExecutor,
    StoreChecked,
    Submit,
    Subscribed,
    SummaryDone,
    Suppress,
    TaskLaunch,
    TaskStatus,
    Tick,
    UpdateRun,
    WriteFailed,
)
from scheduler.framework import missing_ranges
from scheduler.state import (
    PREFETCH,
    TASK_CPUS,
    TASK_MEM_MB,
    InvalidTransition,
    SchedulerConfig,
    SchedulerState,
)

# --- helpers -----------------------------------------------------------------------


def run_info(run_id: str = "r1", sequences: int = 1000, **kw: Any) -> RunInfo:
    return RunInfo(run_id=run_id, sequences=sequences, **kw)


_offer_ids = iter(range(10**9))


def offer(agent: str = "a1", cpus: float = 1.0, mem_mb: float = 4096.0) -> Offer:
    return Offer(f"o{next(_offer_ids)}", agent, f"host-{agent}", cpus, mem_mb)


def offers(*items: Offer, now: float = 0.0) -> Offers:
    return Offers(tuple(items), now)


def of(cmds: list[Command], kind: type) -> list[Any]:
    return [c for c in cmds if isinstance(c, kind)]


def tasks_of(cmds: list[Command]) -> list[TaskLaunch]:
    return [t for launch in of(cmds, Launch) for t in launch.tasks]


def states_of(cmds: list[Command]) -> list[str]:
    return [c.fields["state"] for c in of(cmds, UpdateRun) if "state" in c.fields]


def running(task: TaskLaunch, now: float = 0.0, agent: str = "a1", **data: Any) -> TaskStatus:
    return TaskStatus(
        task.task_id, "TASK_RUNNING", now, report=BatchReport.from_data(data or None),
        executor_id=task.executor_id, agent_id=agent,
    )  # fmt: skip


def finished(task: TaskLaunch, now: float = 0.0, elapsed: float = 0.5, agent: str = "a1"):
    r = task.range
    data = {"next": r.stop, "ok": len(r), "failed": 0, "elapsed": elapsed}
    return TaskStatus(task.task_id, "TASK_FINISHED", now, report=BatchReport.from_data(data),
                      agent_id=agent)  # fmt: skip


def failed(task: TaskLaunch, next_: int | None = None, state: str = "TASK_FAILED", **extra: Any):
    r = task.range
    n = r.start if next_ is None else next_
    data = {"next": n, "ok": n - r.start, "failed": 0, **extra}
    return TaskStatus(task.task_id, state, 1.0, reason="REASON_X",
                      report=BatchReport.from_data(data), agent_id="a1")  # fmt: skip


def all_stored(state: SchedulerState, run_id: str = "r1", now: float = 2.0) -> list[Command]:
    """The completion check's answer when the store holds every result of the run."""
    return state.handle(StoreChecked(run_id, state.runs[run_id].info.sequences, (), now))


def launched_cpus(launch: Launch, info: RunInfo) -> tuple[float, float]:
    """Offer resources a Launch uses: a whole run share per new executor, a slice per task
    on an executor already running (the framework gives a new executor
    cpus - PREFETCH * TASK_CPUS plus PREFETCH task slices)."""
    new = {t.executor_id for t in launch.tasks if t.new_executor}
    extra = [t for t in launch.tasks if t.executor_id not in new]
    cpus = len(new) * info.cpus + len(extra) * TASK_CPUS
    mem = len(new) * info.mem_mb + len(extra) * TASK_MEM_MB
    return cpus, mem


def started(
    info: RunInfo, config: SchedulerConfig | None = None, cpus: float | None = None
) -> tuple[SchedulerState, list[TaskLaunch]]:
    """A state with ``info`` submitted and one executor's batches launched on agent a1."""
    state = SchedulerState(config)
    state.handle(Submit(info, 0.0))
    cmds = state.handle(offers(offer("a1", cpus=info.cpus if cpus is None else cpus)))
    return state, tasks_of(cmds)


# --- offers and resources ---------------------------------------------------------


def test_offer_launches_new_executor_with_prefetch_batches() -> None:
    info = run_info(cpus=1.0, mem_mb=512)
    _state, tasks = started(info)
    assert len(tasks) == PREFETCH
    assert tasks[0].new_executor and not any(t.new_executor for t in tasks[1:])
    assert len({t.executor_id for t in tasks}) == 1
    assert all(t.run == info and t.run_id == "r1" for t in tasks)
    assert [t.range.start for t in tasks] == [0, tasks[0].range.stop]


def test_offer_fits_as_many_executors_as_its_resources_hold() -> None:
    info = run_info(cpus=1.0, mem_mb=512)
    state = SchedulerState()
    state.handle(Submit(info, 0.0))
    big = offer("a1", cpus=2.5, mem_mb=4096)
    cmds = state.handle(offers(big))
    (launch,) = of(cmds, Launch)
    assert launch.offer_id == big.offer_id and launch.agent_id == "a1"
    assert len({t.executor_id for t in launch.tasks}) == 2
    cpus, mem = launched_cpus(launch, info)
    assert cpus <= big.cpus and mem <= big.mem_mb


def test_memory_limits_executors_per_offer() -> None:
    info = run_info(cpus=0.5, mem_mb=512)
    state = SchedulerState()
    state.handle(Submit(info, 0.0))
    cmds = state.handle(offers(offer("a1", cpus=8.0, mem_mb=1100)))
    assert len({t.executor_id for t in tasks_of(cmds)}) == 2


def test_max_executors_is_respected_across_offers() -> None:
    info = run_info(max_executors=2)
    state = SchedulerState()
    state.handle(Submit(info, 0.0))
    first = state.handle(offers(offer("a1", cpus=8.0), offer("a2", cpus=8.0)))
    assert len({t.executor_id for t in tasks_of(first)}) == 2
    later = state.handle(offers(offer("a3", cpus=8.0)))
    assert of(later, Launch) == []
    assert len(state.runs["r1"].executors) == 2


def test_offer_too_small_is_declined_for_busy_refuse_while_work_remains() -> None:
    cfg = SchedulerConfig(busy_refuse_s=1.5, idle_refuse_s=42.0)
    state = SchedulerState(cfg)
    state.handle(Submit(run_info(cpus=1.0), 0.0))
    small = offer("a1", cpus=0.99)
    cmds = state.handle(offers(small))
    assert of(cmds, Launch) == []
    assert of(cmds, Decline) == [Decline((small.offer_id,), 1.5)]


def test_offer_short_of_memory_is_declined() -> None:
    state = SchedulerState()
    state.handle(Submit(run_info(cpus=1.0, mem_mb=512), 0.0))
    cmds = state.handle(offers(offer("a1", cpus=4.0, mem_mb=511)))
    assert of(cmds, Launch) == [] and len(of(cmds, Decline)) == 1


def test_offer_without_any_work_is_declined_for_idle_refuse() -> None:
    cfg = SchedulerConfig(busy_refuse_s=1.5, idle_refuse_s=42.0)
    state = SchedulerState(cfg)
    cmds = state.handle(offers(offer("a1", cpus=4.0)))
    assert [d.refuse_s for d in of(cmds, Decline)] == [42.0]


def test_offer_declined_idle_once_every_sequence_is_launched() -> None:
    cfg = SchedulerConfig(fixed_batch=10, idle_refuse_s=42.0)
    state, tasks = started(run_info(sequences=20), cfg)
    assert sum(len(t.range) for t in tasks) == 20
    cmds = state.handle(offers(offer("a2", cpus=4.0)))
    assert [d.refuse_s for d in of(cmds, Decline)] == [42.0]


def test_existing_executor_takes_a_task_slice_from_a_small_offer() -> None:
    info = run_info(sequences=10_000)
    state, tasks = started(info, SchedulerConfig(fixed_batch=10))
    state.handle(running(tasks[0]))
    state.handle(finished(tasks[0]))
    slice_offer = offer("a1", cpus=TASK_CPUS, mem_mb=TASK_MEM_MB)
    cmds = state.handle(offers(slice_offer))
    (task,) = tasks_of(cmds)
    assert task.executor_id == tasks[0].executor_id and not task.new_executor
    # The same slice on another agent cannot host a new executor.
    other = state.handle(offers(offer("a2", cpus=TASK_CPUS, mem_mb=TASK_MEM_MB)))
    assert of(other, Launch) == [] and len(of(other, Decline)) == 1


def test_executor_never_holds_more_than_prefetch_batches() -> None:
    state, tasks = started(run_info(sequences=10_000), SchedulerConfig(fixed_batch=10))
    cmds = state.handle(offers(offer("a1", cpus=0.5)))
    assert of(cmds, Launch) == []
    ex = state.runs["r1"].executors[tasks[0].executor_id]
    assert len(ex.tasks) == PREFETCH


def test_suppress_when_no_run_has_work_and_only_once() -> None:
    cfg = SchedulerConfig(fixed_batch=10)
    state = SchedulerState(cfg)
    state.handle(Submit(run_info(sequences=20), 0.0))
    cmds = state.handle(offers(offer("a1", cpus=1.0)))
    assert len(tasks_of(cmds)) == 2
    assert of(cmds, Suppress) == [Suppress()]
    again = state.handle(offers(offer("a2", cpus=1.0)))
    assert of(again, Suppress) == []


def test_revive_when_a_new_run_brings_work() -> None:
    state = SchedulerState(SchedulerConfig(fixed_batch=10))
    state.handle(Submit(run_info("r1", sequences=20), 0.0))
    state.handle(offers(offer("a1")))
    cmds = state.handle(Submit(run_info("r2", sequences=5), 1.0))
    assert of(cmds, Revive) == [Revive()]


def test_revive_when_a_failed_batch_must_be_retried() -> None:
    state, tasks = started(run_info(sequences=20), SchedulerConfig(fixed_batch=10))
    assert state.suppressed
    state.handle(running(tasks[0]))
    cmds = state.handle(failed(tasks[0], 4))
    assert of(cmds, Revive) == [Revive()]


# --- batch sizes --------------------------------------------------------------------


def test_first_batches_use_first_batch() -> None:
    _, tasks = started(run_info(sequences=100_000), SchedulerConfig(first_batch=7))
    assert [len(t.range) for t in tasks] == [7, 7]


def test_fixed_batch_sizes_every_batch() -> None:
    _, tasks = started(run_info(sequences=100_000), SchedulerConfig(fixed_batch=123), cpus=3.0)
    assert [len(t.range) for t in tasks] == [123] * (3 * PREFETCH)


def test_fixed_batch_last_batch_is_the_remainder() -> None:
    _, tasks = started(run_info(sequences=25), SchedulerConfig(fixed_batch=10), cpus=3.0)
    assert [(t.range.start, t.range.stop) for t in tasks] == [(0, 10), (10, 20), (20, 25)]


def test_batches_grow_geometrically_after_untimeably_fast_batches() -> None:
    cfg = SchedulerConfig(first_batch=8, growth=16)
    state, tasks = started(run_info(sequences=10_000_000), cfg)
    state.handle(running(tasks[0]))
    state.handle(finished(tasks[0], elapsed=0.001))
    (nxt,) = tasks_of(state.handle(offers(offer("a1", cpus=0.5))))
    assert len(nxt.range) == 8 * 16
    state.handle(finished(tasks[1], elapsed=0.001))
    state.handle(finished(nxt, elapsed=0.001))
    sizes = [len(t.range) for t in tasks_of(state.handle(offers(offer("a1", cpus=0.5))))]
    assert sizes[0] == 8 * 16 * 16


def test_batch_size_follows_measured_rate() -> None:
    cfg = SchedulerConfig(first_batch=8, batch_target_s=2.0, growth=16)
    state, tasks = started(run_info(sequences=10_000_000), cfg)
    state.handle(running(tasks[0]))
    state.handle(finished(tasks[0], elapsed=0.4))  # 8 sequences in 0.4 s: 20 per second
    (nxt,) = tasks_of(state.handle(offers(offer("a1", cpus=0.5))))
    assert len(nxt.range) == 40  # 2 s at 20/s


def test_rate_based_size_is_capped_by_growth() -> None:
    cfg = SchedulerConfig(first_batch=8, batch_target_s=2.0, growth=4)
    state, tasks = started(run_info(sequences=10_000_000), cfg)
    state.handle(finished(tasks[0], elapsed=0.04))  # 200/s → 400 wanted, 8 * 4 allowed
    (nxt,) = tasks_of(state.handle(offers(offer("a1", cpus=0.5))))
    assert len(nxt.range) == 32


def test_batch_size_is_capped_by_max_batch() -> None:
    cfg = SchedulerConfig(first_batch=10_000, max_batch=500)
    _, tasks = started(run_info(sequences=10_000_000), cfg)
    assert [len(t.range) for t in tasks] == [500, 500]


def test_tail_batches_shrink_to_keep_every_slot_busy() -> None:
    cfg = SchedulerConfig(first_batch=1000)
    state, tasks = started(run_info(sequences=100), cfg)
    # One executor, PREFETCH slots: half of the rest, then half of what is left.
    assert [len(t.range) for t in tasks] == [50, 25]
    state.handle(finished(tasks[0]))
    (nxt,) = tasks_of(state.handle(offers(offer("a1", cpus=0.5))))
    assert len(nxt.range) == math.ceil(25 / PREFETCH)


def test_batches_never_go_beyond_sequences() -> None:
    _, tasks = started(run_info(sequences=3), SchedulerConfig(first_batch=8), cpus=4.0)
    stops = [t.range.stop for t in tasks]
    assert max(stops) == 3
    assert sum(len(t.range) for t in tasks) == 3
    assert all(len(t.range) >= 1 for t in tasks)


def test_single_sequence_run_launches_one_batch() -> None:
    _, tasks = started(run_info(sequences=1), SchedulerConfig(fixed_batch=100), cpus=4.0)
    assert [t.range for t in tasks] == [Range(0, 1, 1)]


# --- run states ---------------------------------------------------------------------


def test_run_goes_through_every_state_to_finished() -> None:
    state = SchedulerState(SchedulerConfig(fixed_batch=5))
    log: list[Command] = []
    log += state.handle(Submit(run_info(sequences=10), 0.0))
    assert state.runs["r1"].state == "QUEUED"
    log += state.handle(offers(offer("a1")))
    assert state.runs["r1"].state == "STAGING"
    tasks = tasks_of(log)
    log += state.handle(running(tasks[0], now=1.0))
    assert state.runs["r1"].state == "RUNNING"
    log += state.handle(finished(tasks[0]))
    log += state.handle(finished(tasks[1]))
    # Every batch reported done: the store is counted before the summary.
    assert of(log, CheckStored) == [CheckStored("r1", 10)]
    assert state.runs["r1"].state == "RUNNING" and of(log, StartSummary) == []
    log += all_stored(state)
    assert state.runs["r1"].state == "SUMMARIZING"
    log += state.handle(SummaryDone("r1", 10, 0, 5.0))
    assert "r1" not in state.runs
    assert states_of(log) == ["STAGING", "RUNNING", "SUMMARIZING", "FINISHED"]
    (started_update,) = [c for c in of(log, UpdateRun) if c.fields.get("state") == "RUNNING"]
    assert started_update.fields["started_at"] == 1.0
    (final,) = [c for c in of(log, UpdateRun) if c.fields.get("state") == "FINISHED"]
    assert final.fields == {
        "state": "FINISHED", "ok": 10, "failed": 0, "running": 0, "finished_at": 5.0,
    }  # fmt: skip


def test_summarizing_update_carries_counts_and_starts_summary_once() -> None:
    state, tasks = started(run_info(sequences=10), SchedulerConfig(fixed_batch=5))
    state.handle(running(tasks[0]))
    assert not of(state.handle(finished(tasks[0])), StopExecutor)  # a batch still queued
    # The last batch ended and nothing is left to launch: the executor goes at once,
    # not after the store check, and only once.
    assert len(of(state.handle(finished(tasks[1])), StopExecutor)) == 1
    cmds = all_stored(state)
    (upd,) = [c for c in of(cmds, UpdateRun) if c.fields.get("state") == "SUMMARIZING"]
    assert upd.fields["ok"] == 10 and upd.fields["failed"] == 0 and upd.fields["running"] == 0
    assert [c.run_id for c in of(cmds, StartSummary)] == ["r1"]
    assert not of(cmds, StopExecutor)
    # Duplicate terminal updates, ticks and offers start nothing more.
    more = state.handle(finished(tasks[1])) + state.handle(Tick(100.0))
    more += state.handle(offers(offer("a1"))) + all_stored(state)
    assert of(more, StartSummary) == [] and of(more, CheckStored) == []


def test_summary_with_failed_sequences_ends_failed() -> None:
    state, tasks = started(run_info(sequences=10), SchedulerConfig(fixed_batch=5))
    for t in tasks:
        state.handle(finished(t))
    all_stored(state)
    cmds = state.handle(SummaryDone("r1", 8, 2, 3.0))
    (upd,) = of(cmds, UpdateRun)
    assert upd.fields["state"] == "FAILED"
    assert upd.fields["reason"] == "2 of 10 sequences failed"


def test_summary_error_ends_failed_with_its_reason() -> None:
    state, tasks = started(run_info(sequences=10), SchedulerConfig(fixed_batch=5))
    for t in tasks:
        state.handle(finished(t))
    all_stored(state)
    cmds = state.handle(SummaryDone("r1", 10, 0, 3.0, error="spark died"))
    assert states_of(cmds) == ["FAILED"]
    assert of(cmds, UpdateRun)[0].fields["reason"] == "summary failed: spark died"


def test_summary_done_for_a_run_not_summarizing_is_ignored() -> None:
    state, _ = started(run_info(sequences=10), SchedulerConfig(fixed_batch=5))
    assert state.handle(SummaryDone("r1", 10, 0, 3.0)) == []
    assert state.handle(SummaryDone("nope", 10, 0, 3.0)) == []
    assert state.runs["r1"].state == "STAGING"


@pytest.mark.parametrize(
    ("frm", "to"),
    [
        ("QUEUED", "RUNNING"),
        ("QUEUED", "FINISHED"),
        ("RUNNING", "STAGING"),
        ("RUNNING", "FINISHED"),
        ("SUMMARIZING", "RUNNING"),
        ("FINISHED", "RUNNING"),
        ("KILLED", "FAILED"),
        ("FAILED", "SUMMARIZING"),
    ],
)
def test_invalid_transitions_raise(frm: str, to: str) -> None:
    state = SchedulerState()
    state.handle(Submit(run_info(), 0.0))
    run = state.runs["r1"]
    run.state = frm
    with pytest.raises(InvalidTransition, match=f"{frm} -> {to}"):
        state._transition(run, to, 1.0, "test", [])
    assert run.state == frm


# --- failures and retries -----------------------------------------------------------


def test_failed_task_retries_the_rest_of_its_batch_with_next_attempt() -> None:
    state, tasks = started(run_info(sequences=100, max_attempts=3), SchedulerConfig(fixed_batch=10))
    state.handle(running(tasks[0], next=3, ok=3, failed=0))
    cmds = state.handle(failed(tasks[0], 4))
    rest = Range(4, 10, 2)
    assert list(state.runs["r1"].pending) == [rest]
    assert SaveBatch("r1", "retry-4", rest) in cmds
    assert ForgetBatch("r1", tasks[0].task_id) in cmds
    # The retry is launched on a later offer, before any new range.
    later = tasks_of(state.handle(offers(offer("a1", cpus=0.5))))
    assert later[0].range == rest
    assert list(state.runs["r1"].pending) == []


def test_failure_without_progress_data_retries_from_last_reported_next() -> None:
    state, tasks = started(run_info(sequences=100), SchedulerConfig(fixed_batch=10))
    state.handle(running(tasks[0], next=6, ok=6, failed=0))
    state.handle(TaskStatus(tasks[0].task_id, "TASK_LOST", 1.0, agent_id="a1"))
    assert list(state.runs["r1"].pending) == [Range(6, 10, 2)]


def test_stale_progress_never_moves_next_back() -> None:
    state, tasks = started(run_info(sequences=100), SchedulerConfig(fixed_batch=10))
    state.handle(running(tasks[0], next=6, ok=6, failed=0))
    state.handle(running(tasks[0], next=3, ok=3, failed=0))  # an older update, late
    state.handle(TaskStatus(tasks[0].task_id, "TASK_FAILED", 1.0, agent_id="a1"))
    assert list(state.runs["r1"].pending) == [Range(6, 10, 2)]


def test_progress_beyond_the_batch_is_clamped_to_its_end() -> None:
    state, tasks = started(run_info(sequences=100), SchedulerConfig(fixed_batch=10))
    state.handle(running(tasks[0], next=50, ok=10, failed=0))
    assert state.runs["r1"].counts() == (10, 0, 10)  # nothing of it running, tasks[1] is


def test_task_lost_is_retried_like_task_failed() -> None:
    state, tasks = started(run_info(sequences=100), SchedulerConfig(fixed_batch=10))
    state.handle(running(tasks[0]))
    state.handle(failed(tasks[1], 12, state="TASK_LOST"))
    assert list(state.runs["r1"].pending) == [Range(12, 20, 2)]


def test_task_failing_after_its_last_sequence_leaves_nothing_to_retry() -> None:
    state, tasks = started(run_info(sequences=20), SchedulerConfig(fixed_batch=10))
    state.handle(running(tasks[0]))
    cmds = state.handle(failed(tasks[0], 10))
    assert list(state.runs["r1"].pending) == []
    assert of(cmds, WriteFailed) == []


def test_attempts_exhausted_write_the_rest_as_failed_and_the_run_fails() -> None:
    info = run_info(sequences=20, max_attempts=2)
    state, tasks = started(info, SchedulerConfig(fixed_batch=10))
    state.handle(running(tasks[0]))
    state.handle(failed(tasks[0], 3))
    (retry,) = tasks_of(state.handle(offers(offer("a1", cpus=0.5))))
    assert retry.range == Range(3, 10, 2)
    state.handle(running(retry))
    cmds = state.handle(failed(retry, 5))
    (wf,) = of(cmds, WriteFailed)
    assert wf.run_id == "r1" and (wf.range.start, wf.range.stop) == (5, 10)
    assert "after 2 attempts" in wf.reason
    assert list(state.runs["r1"].pending) == []
    state.handle(finished(tasks[1]))
    cmds = all_stored(state)
    (upd,) = [c for c in of(cmds, UpdateRun) if c.fields.get("state") == "SUMMARIZING"]
    assert upd.fields["failed"] == 5
    assert upd.fields["ok"] == 3 + 2 + 10
    assert [c.run_id for c in of(cmds, StartSummary)] == ["r1"]
    end = state.handle(SummaryDone("r1", 15, 5, 9.0))
    assert states_of(end) == ["FAILED"]


def test_fatal_failure_fails_the_run_at_once() -> None:
    state, tasks = started(run_info(sequences=100), SchedulerConfig(fixed_batch=10), cpus=2.0)
    for t in tasks:
        state.handle(running(t))
    cmds = state.handle(failed(tasks[0], 0, fatal=True, error="ImportError: no module x"))
    (upd,) = of(cmds, UpdateRun)
    assert upd.fields["state"] == "FAILED"
    assert upd.fields["reason"] == "ImportError: no module x"
    assert {k.task_id for k in of(cmds, KillTask)} == {t.task_id for t in tasks[1:]}
    assert {s.executor_id for s in of(cmds, StopExecutor)} == {t.executor_id for t in tasks}
    assert of(cmds, StartSummary) == []
    assert of(cmds, SaveBatch) == []
    assert "r1" not in state.runs and state.task_run == {}


def test_lost_executor_retries_its_batches() -> None:
    state, tasks = started(run_info(sequences=100), SchedulerConfig(fixed_batch=10), cpus=2.0)
    for t in tasks:
        state.handle(running(t))
    state.handle(running(tasks[0], next=4, ok=4, failed=0))
    lost = tasks[0].executor_id
    cmds = state.handle(ExecutorLost(lost, "a1", 137, 2.0))
    mine = [t for t in tasks if t.executor_id == lost]
    expected = [Range(4, 10, 2)] + [Range(t.range.start, t.range.stop, 2) for t in mine[1:]]
    by_start = attrgetter("start")
    assert sorted(state.runs["r1"].pending, key=by_start) == expected
    assert sorted((s.range for s in of(cmds, SaveBatch)), key=by_start) == expected
    assert lost not in state.runs["r1"].executors
    assert all(t.task_id not in state.task_run for t in mine)
    # The other executor's batches are untouched.
    assert {b for b in state.runs["r1"].batches} == {
        t.task_id for t in tasks if t.executor_id != lost
    }


def test_lost_agent_waits_out_the_grace_then_runs_its_batches_again_elsewhere() -> None:
    config = SchedulerConfig(fixed_batch=10, unreachable_grace_s=30.0)
    state = SchedulerState(config)
    state.handle(Submit(run_info(sequences=100), 0.0))
    tasks = tasks_of(state.handle(offers(offer("a1", cpus=1.0), offer("a2", cpus=1.0))))
    for t in tasks:
        state.handle(running(t))
    cmds = state.handle(AgentLost("a1", 2.0))
    run = state.runs["r1"]
    on_a1 = [t for t in tasks if t.executor_id in run.executors
             and run.executors[t.executor_id].agent_id == "a1"]  # fmt: skip
    assert len(on_a1) == PREFETCH and not run.pending  # it may come back: wait
    (ask,) = of(cmds, Reconcile)
    assert set(ask.tasks) == {(t.task_id, "a1") for t in on_a1}
    assert not run.pending and not of(state.handle(Tick(31.0)), SaveBatch)
    cmds = state.handle(Tick(32.5))
    assert sorted(run.pending, key=attrgetter("start")) == [
        Range(t.range.start, t.range.stop, 1)
        for t in on_a1  # same attempt: not the model
    ]
    assert {e.agent_id for e in run.executors.values()} == {"a2"}
    assert run.start_failures == 0
    # The agent comes back with the abandoned tasks running: they are killed.
    late = state.handle(running(on_a1[0], now=40.0, agent="a1"))
    assert of(late, KillTask) == [KillTask(on_a1[0].task_id, "a1")]
    assert of(late, StopExecutor) == [StopExecutor(on_a1[0].executor_id, "a1")]


def test_an_executor_given_up_that_never_reports_is_stopped_once_its_agent_answers() -> None:
    """Its batches ended on the agent while it was away and their updates were lost:
    the tasks given up are still reconciled, and the first word from the agent (here
    the master's answer) gets their executor stopped."""
    info = run_info(sequences=100, cpus=1.0)
    state = SchedulerState(SchedulerConfig(fixed_batch=10, unreachable_grace_s=30.0))
    state.handle(Submit(info, 0.0))
    mine = tasks_of(state.handle(offers(offer("a1", cpus=1.0))))
    for t in mine:
        state.handle(running(t, agent="a1"))
    state.handle(AgentLost("a1", 1.0))
    cmds = state.handle(Tick(32.5))  # past the grace: its batches run elsewhere
    assert {t for t, _ in of(cmds, Reconcile)[0].tasks} == {t.task_id for t in mine}
    assert state.given_up == {mine[0].executor_id: "a1"}
    # The master's answer names no executor (the task is unknown to it now): the
    # answer is still the sign that the agent is back.
    answer = TaskStatus(mine[0].task_id, "TASK_GONE", 40.0, "REASON_RECONCILIATION",
                        "Reconciliation: Task is unknown to the agent", agent_id="a1")  # fmt: skip
    stop = of(state.handle(answer), StopExecutor)
    assert stop == [StopExecutor(mine[0].executor_id, "a1")]
    assert mine[0].task_id not in state.reconciliation.waiting and state.given_up == {}
    assert not of(state.handle(offers(offer("a1"), now=41.0)), StopExecutor)


def test_unreachable_then_running_again_runs_nothing_twice() -> None:
    config = SchedulerConfig(fixed_batch=10, unreachable_grace_s=30.0)
    state, tasks = started(run_info(sequences=100), config)
    for t in tasks:
        state.handle(running(t))
    cmds = state.handle(TaskStatus(tasks[0].task_id, "TASK_UNREACHABLE", 1.0, agent_id="a1",
                                   reason="REASON_SLAVE_REMOVED"))  # fmt: skip
    assert of(cmds, Reconcile) == [Reconcile(((tasks[0].task_id, "a1"),))]
    assert tasks[0].task_id in state.runs["r1"].batches and not state.runs["r1"].pending
    state.handle(running(tasks[0], now=20.0))  # the partition healed
    assert state.reconciliation.waiting == {}
    for now in (40.0, 80.0):
        cmds = state.handle(Tick(now))
        assert not of(cmds, SaveBatch) and not state.runs["r1"].pending
    assert set(state.runs["r1"].batches) == {t.task_id for t in tasks}


def test_an_end_the_master_reconciles_waits_for_the_executors_own_report() -> None:
    """TASK_FINISHED from reconciliation says the task ended, not how far it got: the
    batch waits for the executor's update (its agent sends it until acknowledged), and
    runs again only when that report stays away past ``report_wait_s``."""
    config = SchedulerConfig(fixed_batch=10, report_wait_s=60.0)
    state, tasks = started(run_info(sequences=100), config)
    for t in tasks:
        state.handle(running(t, next=t.range.start + 4, ok=4, failed=0))
    first, second = tasks[0], tasks[1]
    for t in (first, second):
        said = TaskStatus(t.task_id, "TASK_FINISHED", 1.0, "REASON_RECONCILIATION",
                          "Reconciliation: Latest task state", agent_id="a1")  # fmt: skip
        assert not of(state.handle(said), SaveBatch)
    assert set(state.runs["r1"].batches) == {first.task_id, second.task_id}
    state.handle(finished(first, now=5.0))  # the executor's own update, its report in
    assert first.task_id not in state.runs["r1"].batches
    assert not of(state.handle(Tick(30.0)), SaveBatch) and not state.runs["r1"].pending
    cmds = state.handle(Tick(62.0))  # no report from the second's executor
    r = second.range
    assert list(state.runs["r1"].pending) == [Range(r.start + 4, r.stop, r.attempt)]
    assert of(cmds, WriteFailed) == []


@pytest.mark.parametrize(
    ("task_state", "reason"),
    [
        ("TASK_GONE", "REASON_SLAVE_REMOVED"),
        ("TASK_GONE_BY_OPERATOR", "REASON_SLAVE_REMOVED_BY_OPERATOR"),
        ("TASK_LOST", "REASON_SLAVE_REMOVED"),
        ("TASK_UNKNOWN", "REASON_RECONCILIATION"),
    ],
)
def test_batches_the_cluster_lost_run_again_at_the_same_attempt(task_state: str,
                                                                 reason: str) -> None:  # fmt: skip
    info = run_info(sequences=100, max_attempts=1)
    state, tasks = started(info, SchedulerConfig(fixed_batch=10))
    state.handle(running(tasks[0], next=3, ok=3, failed=0))
    cmds = state.handle(
        TaskStatus(tasks[0].task_id, task_state, 1.0, reason, report=BatchReport(3))
    )
    assert list(state.runs["r1"].pending) == [Range(3, 10, 1)]
    assert of(cmds, WriteFailed) == [] and "r1" in state.runs


def test_invalid_offers_leave_no_ghost_executor_and_never_fail_the_run() -> None:
    info = run_info(sequences=100, max_executors=1, max_attempts=1)
    state = SchedulerState(SchedulerConfig(fixed_batch=10))
    state.handle(Submit(info, 0.0))
    for round_ in range(10):  # far more than max_attempts * PREFETCH start failures
        tasks = tasks_of(state.handle(offers(offer("a1"), now=float(round_))))
        assert len(tasks) == PREFETCH and tasks[0].new_executor
        for t in tasks:
            state.handle(TaskStatus(t.task_id, "TASK_DROPPED", float(round_),
                                    "REASON_INVALID_OFFERS", "Offer was rescinded"))  # fmt: skip
        run = state.runs["r1"]
        assert run.executors == {} and state.executor_run == {} and run.start_failures == 0
    assert sorted(r.start for r in run.pending) == [0, 10] and run.state == "STAGING"


def test_a_launch_the_driver_could_not_send_puts_its_batches_back() -> None:
    state = SchedulerState(SchedulerConfig(fixed_batch=10))
    state.handle(Submit(run_info(sequences=100), 0.0))
    (launch,) = of(state.handle(offers(offer("a1"))), Launch)
    state.handle(CommandFailed(launch, "RuntimeError: Not connected yet", 1.0))
    run = state.runs["r1"]
    assert run.batches == {} and run.executors == {}
    assert sorted(r.start for r in run.pending) == [0, 10]
    again = tasks_of(state.handle(offers(offer("a1"), now=2.0)))
    assert [t.range for t in again] == [Range(0, 10, 1), Range(10, 20, 1)]


def test_reconciliation_is_retried_with_backoff_until_answered_then_implicit() -> None:
    config = SchedulerConfig(fixed_batch=10, reconcile_backoff_s=1.0, reconcile_backoff_max_s=4.0,
                             implicit_reconcile_s=100.0)  # fmt: skip
    state, tasks = started(run_info(sequences=100), config)
    asked: list[float] = []
    for step in range(1, 121):  # 12 s
        now = step / 10
        if now == 1.0:
            asked += [now] * len(of(state.handle(Subscribed(now, reregistered=True)), Reconcile))
        elif of(state.handle(Tick(now)), Reconcile):
            asked.append(now)
    # 1 s, then 2, 4 and 4 (the cap) after each unanswered question.
    assert asked == [1.0, 2.0, 4.0, 8.0, 12.0]
    state.handle(running(tasks[0], now=12.0))
    (last,) = of(state.handle(Tick(16.0)), Reconcile)
    assert [t for t, _ in last.tasks] == [tasks[1].task_id]  # only the unanswered one
    state.handle(running(tasks[1], now=16.5))
    quiet = [c for now in (17.0, 30.0, 90.0) for c in of(state.handle(Tick(now)), Reconcile)]
    assert quiet == []
    implicit = of(state.handle(Tick(117.5)), Reconcile)
    assert implicit == [Reconcile(())]


def test_a_removed_framework_runs_every_batch_in_flight_again_and_says_so() -> None:
    state, tasks = started(run_info(sequences=100), SchedulerConfig(fixed_batch=10))
    state.handle(running(tasks[0], next=4, ok=4, failed=0))
    cmds = state.handle(FrameworkRemoved("fw-1", 3.0))
    run = state.runs["r1"]
    assert sorted(run.pending, key=attrgetter("start")) == [Range(4, 10, 1), Range(10, 20, 1)]
    assert run.batches == {} and run.executors == {} and state.task_run == {}
    (line,) = of(cmds, Log)
    assert "fw-1 was removed" in line.message and "resubmitted" in line.message
    assert of(state.handle(Subscribed(4.0)), Revive) == [Revive()]
    relaunched = tasks_of(state.handle(offers(offer("a2"), now=5.0)))
    assert [t.range for t in relaunched] == [Range(4, 10, 1), Range(10, 20, 1)]
    assert run.counts()[0] == 4


def test_failed_store_writes_are_retried_and_never_undo_a_newer_one() -> None:
    state, tasks = started(run_info(sequences=100), SchedulerConfig(fixed_batch=10))
    state.handle(CommandFailed(UpdateRun("r1", {"ok": 3, "running": 7}), "store away", 1.0))
    state.handle(CommandFailed(UpdateRun("r1", {"ok": 5}), "store away", 1.1))
    # The next update of the run carries the unsaved fields, its own over them.
    cmds = state.handle(running(tasks[0], now=1.2))
    (upd,) = of(cmds, UpdateRun)
    assert upd.fields == {"ok": 5, "running": 7, "state": "RUNNING", "started_at": 1.2}
    later = of(state.handle(Tick(5.0)), UpdateRun)  # only the tick's own count update
    assert [c.fields for c in later] == [{"ok": 0, "failed": 0, "running": 20}]
    # A batch record: the newest command of a key wins.
    save = SaveBatch("r1", "r1.t9", Range(1, 2))
    state.handle(CommandFailed(save, "store away", 6.0))
    assert of(state.handle(Tick(7.0)), SaveBatch) == [save]


def test_a_store_that_refuses_writes_for_too_long_fails_the_run() -> None:
    config = SchedulerConfig(fixed_batch=10, store_give_up_s=60.0)
    state, _ = started(run_info(sequences=100), config)
    update = UpdateRun("r1", {"ok": 3})
    state.handle(CommandFailed(update, "NoHostAvailable", 1.0))
    now, retried = 1.0, 0
    while "r1" in state.runs and now < 200:
        now += 0.5
        for cmd in state.handle(Tick(now)):
            if isinstance(cmd, UpdateRun) and "state" not in cmd.fields:
                retried += 1
                state.handle(CommandFailed(cmd, "NoHostAvailable", now))  # still away
    assert "r1" not in state.runs and 60.0 < now < 75.0
    assert 3 <= retried <= 12  # backed off, not every tick


def test_a_failed_revive_is_sent_again() -> None:
    state = SchedulerState()
    state.handle(Submit(run_info(), 0.0))
    state.handle(Tick(0.1))
    state.handle(CommandFailed(Revive(), "RuntimeError: Not connected yet", 0.2))
    assert of(state.handle(Tick(0.5)), Revive) == [Revive()]
    assert of(state.handle(Tick(1.0)), Revive) == []


def test_results_missing_from_the_store_run_again_then_the_run_fails() -> None:
    config = SchedulerConfig(fixed_batch=10, store_checks=2)
    state, tasks = started(run_info(sequences=20), config)
    for t in tasks:
        state.handle(finished(t))
    cmds = state.handle(StoreChecked("r1", 17, (Range(4, 7),), 2.0))
    assert list(state.runs["r1"].pending) == [Range(4, 7)]
    assert any("17 of 20" in c.message for c in of(cmds, Log))
    (again,) = tasks_of(state.handle(offers(offer("a1"), now=3.0)))
    assert again.range == Range(4, 7)
    assert of(state.handle(finished(again, now=4.0)), CheckStored) == [CheckStored("r1", 20)]
    state.handle(StoreChecked("r1", 19, (Range(0, 1),), 5.0))
    (retry,) = tasks_of(state.handle(offers(offer("a1"), now=6.0)))
    state.handle(finished(retry, now=7.0))
    state.handle(Tick(12.0))  # the check runs again once its backoff has passed
    cmds = state.handle(StoreChecked("r1", 19, (Range(0, 1),), 12.5))
    assert states_of(cmds) == ["FAILED"]
    assert "holds 19 of 20 results" in of(cmds, UpdateRun)[-1].fields["reason"]


def test_missing_ranges_are_the_gaps_between_stored_indices() -> None:
    assert missing_ranges([], 3) == (Range(0, 3),)
    assert missing_ranges([0, 1, 2], 3) == ()
    assert missing_ranges([1, 2, 5], 7) == (Range(0, 1), Range(3, 5), Range(6, 7))


def test_executors_that_never_start_fail_the_run() -> None:
    info = run_info(sequences=1000, max_attempts=3)
    state = SchedulerState(SchedulerConfig(fixed_batch=10))
    state.handle(Submit(info, 0.0))
    log: list[Command] = []
    for round_ in range(info.max_attempts + 1):
        if "r1" not in state.runs:
            break
        tasks = tasks_of(state.handle(offers(offer(f"a{round_}", cpus=1.0))))
        assert tasks
        for t in tasks:
            log += state.handle(TaskStatus(t.task_id, "TASK_FAILED", 1.0, "REASON_X"))
            if "r1" not in state.runs:
                break
        else:
            log += state.handle(ExecutorLost(tasks[0].executor_id, f"a{round_}", 1, 1.0))
    assert "r1" not in state.runs
    assert states_of(log)[-1] == "FAILED"
    final = [c for c in of(log, UpdateRun) if c.fields.get("state") == "FAILED"][-1]
    assert final.fields["reason"].startswith("executors could not start")
    assert of(log, StartSummary) == []


def test_a_running_task_resets_start_failures() -> None:
    info = run_info(sequences=1000, max_attempts=1)
    state = SchedulerState(SchedulerConfig(fixed_batch=10))
    state.handle(Submit(info, 0.0))
    tasks = tasks_of(state.handle(offers(offer("a1", cpus=1.0))))
    state.handle(TaskStatus(tasks[0].task_id, "TASK_FAILED", 1.0))
    assert state.runs["r1"].start_failures == 1
    state.handle(running(tasks[1]))
    assert state.runs["r1"].start_failures == 0
    assert state.runs["r1"].state == "RUNNING"


# --- kill, timeouts, ticks -----------------------------------------------------------


def test_kill_run_kills_tasks_stops_executors_and_ignores_late_updates() -> None:
    state, tasks = started(run_info(sequences=100), SchedulerConfig(fixed_batch=10), cpus=2.0)
    for t in tasks:
        state.handle(running(t))
    cmds = state.handle(KillRun("r1", 3.0))
    assert states_of(cmds) == ["KILLED"]
    assert of(cmds, UpdateRun)[0].fields["reason"] == "killed on request"
    assert {k.task_id for k in of(cmds, KillTask)} == {t.task_id for t in tasks}
    assert all(k.agent_id == "a1" for k in of(cmds, KillTask))
    assert len(of(cmds, StopExecutor)) == 2
    assert of(cmds, StartSummary) == []
    # Terminal updates of the killed tasks are ignored; a live one is killed again.
    assert state.handle(TaskStatus(tasks[0].task_id, "TASK_KILLED", 4.0)) == []
    assert state.handle(finished(tasks[1])) == []
    again = state.handle(running(tasks[2], agent="a9"))
    assert again == [KillTask(tasks[2].task_id, "a9")]


def test_update_for_an_unknown_task_is_killed_unless_terminal() -> None:
    state = SchedulerState()
    assert state.handle(TaskStatus("zz.t1", "TASK_RUNNING", 0.0, agent_id="a7")) == [
        KillTask("zz.t1", "a7")
    ]
    assert state.handle(TaskStatus("zz.t1", "TASK_FAILED", 0.0, agent_id="a7")) == []


def test_kill_of_an_unknown_run_does_nothing() -> None:
    assert SchedulerState().handle(KillRun("nope", 0.0)) == []


def test_kill_while_summarizing_is_allowed() -> None:
    state, tasks = started(run_info(sequences=10), SchedulerConfig(fixed_batch=5))
    for t in tasks:
        state.handle(finished(t))
    assert states_of(state.handle(KillRun("r1", 2.0))) == ["KILLED"]


def test_tick_past_timeout_fails_the_run() -> None:
    info = run_info(sequences=100, timeout_s=10.0)
    state, tasks = started(info, SchedulerConfig(fixed_batch=10))
    assert states_of(state.handle(Tick(10.0))) == []
    cmds = state.handle(Tick(10.5))
    assert states_of(cmds) == ["FAILED"]
    assert of(cmds, UpdateRun)[-1].fields["reason"] == "timed out after 10 s"
    assert {k.task_id for k in of(cmds, KillTask)} == {t.task_id for t in tasks}
    assert "r1" not in state.runs


def test_tick_emits_count_updates_throttled() -> None:
    state, tasks = started(run_info(sequences=100), SchedulerConfig(fixed_batch=10))
    state.handle(running(tasks[0], next=4, ok=3, failed=1))
    first = [c.fields for c in of(state.handle(Tick(1.0)), UpdateRun)]
    assert first == [{"ok": 3, "failed": 1, "running": 6 + 10}]
    state.handle(running(tasks[0], next=6, ok=5, failed=1))
    assert of(state.handle(Tick(1.5)), UpdateRun) == []  # too soon
    later = [c.fields for c in of(state.handle(Tick(2.0)), UpdateRun)]
    assert later == [{"ok": 5, "failed": 1, "running": 4 + 10}]
    assert of(state.handle(Tick(10.0)), UpdateRun) == []  # unchanged


# --- subscription and restart ----------------------------------------------------------


def test_resubscription_reconciles_tasks_in_flight() -> None:
    state, tasks = started(run_info(sequences=100), SchedulerConfig(fixed_batch=10))
    cmds = state.handle(Subscribed(5.0, reregistered=True))
    (rec,) = of(cmds, Reconcile)
    assert set(rec.tasks) == {(t.task_id, "a1") for t in tasks}
    assert of(cmds, Revive) == [Revive()]  # the run still has work


def test_subscription_without_tasks_reconciles_nothing() -> None:
    assert of(SchedulerState().handle(Subscribed(0.0)), Reconcile) == []


def test_submit_after_restart_resumes_without_relaunching_done_work() -> None:
    info = run_info(sequences=40)
    state = SchedulerState(SchedulerConfig(fixed_batch=10))
    in_flight = (("r1.t3", "r1.e1", "a1", Range(20, 30, 1)),)
    cmds = state.handle(
        Submit(info, 0.0, next_index=30, pending=(Range(12, 20, 2),), in_flight=in_flight, ok=12)
    )
    # Asked about with its agent, which the store kept: the executor's place is known.
    assert of(cmds, Reconcile) == [Reconcile((("r1.t3", "a1"),))]
    assert state.runs["r1"].executors["r1.e1"].agent_id == "a1"
    run = state.runs["r1"]
    assert run.state == "STAGING" and run.counts()[0] == 12
    state.handle(TaskStatus("r1.t3", "TASK_RUNNING", 1.0, agent_id="a1"))
    assert run.executors["r1.e1"].agent_id == "a1" and run.state == "RUNNING"
    tasks = tasks_of(state.handle(offers(offer("a2", cpus=4.0))))
    assert [t.range for t in tasks] == [Range(12, 20, 2), Range(30, 40, 1)]
    assert {t.task_id for t in tasks}.isdisjoint({"r1.t3"})
    assert all(int(t.task_id.rsplit(".t", 1)[1]) > 3 for t in tasks)
    assert all(t.executor_id != "r1.e1" for t in tasks)
    log: list[Command] = []
    log += state.handle(TaskStatus("r1.t3", "TASK_FINISHED", 2.0, report=BatchReport(30, 10)))
    for t in tasks:
        log += state.handle(finished(t, agent="a2"))
    log += all_stored(state)
    (upd,) = [c for c in of(log, UpdateRun) if c.fields.get("state") == "SUMMARIZING"]
    assert upd.fields["ok"] == 40
    # A resumed run keeps the start time stored before the restart.
    assert all("started_at" not in c.fields for c in of(log, UpdateRun))
    assert [c.run_id for c in of(log, StartSummary)] == ["r1"]


def test_submit_of_a_run_with_everything_stored_goes_straight_to_summary() -> None:
    state = SchedulerState()
    assert of(state.handle(Submit(run_info(sequences=10), 0.0, next_index=10, ok=10)),
              CheckStored) == [CheckStored("r1", 10)]  # fmt: skip
    cmds = all_stored(state)
    assert states_of(cmds) == ["SUMMARIZING"]
    assert [c.run_id for c in of(cmds, StartSummary)] == ["r1"]


# --- whole runs: ranges, coverage, memory ---------------------------------------------


@dataclass
class SimTask:
    launch: TaskLaunch
    agent: str
    next: int
    running: bool = False


@dataclass
class Sim:
    """Plays the cluster and the executors around a SchedulerState."""

    info: RunInfo
    config: SchedulerConfig
    rng: random.Random
    state: SchedulerState = field(init=False)
    tasks: dict[str, SimTask] = field(default_factory=dict)
    stored: Counter[int] = field(default_factory=Counter)
    written_failed: Counter[int] = field(default_factory=Counter)
    states: list[str] = field(default_factory=list)
    summaries: int = 0
    launched: list[TaskLaunch] = field(default_factory=list)
    now: float = 0.0

    def __post_init__(self) -> None:
        self.state = SchedulerState(self.config)
        self.send(Submit(self.info, 0.0))

    def send(self, event: Event) -> list[Command]:
        cmds = self.state.handle(event)
        self.apply(cmds)
        return cmds

    def apply(self, cmds: list[Command]) -> None:
        for c in cmds:
            if isinstance(c, Launch):
                for t in c.tasks:
                    self.check_new_range(t.range)
                    self.tasks[t.task_id] = SimTask(t, c.agent_id, t.range.start)
                    self.launched.append(t)
            elif isinstance(c, KillTask):
                self.tasks.pop(c.task_id, None)
            elif isinstance(c, WriteFailed):
                for i in range(c.range.start, c.range.stop):
                    self.written_failed[i] += 1
            elif isinstance(c, StartSummary):
                self.summaries += 1
            elif isinstance(c, CheckStored):  # the store as the executors left it
                have = sorted(i for i in range(c.sequences)
                              if self.stored[i] or self.written_failed[i])  # fmt: skip
                missing = missing_ranges(have, c.sequences)
                self.send(StoreChecked(c.run_id, len(have), missing, self.now))
            elif isinstance(c, UpdateRun) and "state" in c.fields:
                self.states.append(c.fields["state"])

    def check_new_range(self, r: Range) -> None:
        assert 0 <= r.start < r.stop <= self.info.sequences
        for t in self.tasks.values():
            other = t.launch.range
            assert r.stop <= other.start or other.stop <= r.start, (r, other)
        assert not any(self.stored[i] for i in range(r.start, r.stop)), r

    @property
    def done(self) -> bool:
        return self.info.run_id not in self.state.runs

    def step(self) -> None:
        self.now += 0.1
        choice = self.rng.random()
        live = list(self.tasks.values())
        if not live or choice < 0.25:
            agent = f"a{self.rng.randrange(3)}"
            cpus = self.rng.choice([0.02, 0.5, 1.0, 2.0, 3.5])
            o = offer(agent, cpus=cpus)
            cmds = self.send(offers(o, now=self.now))
            for launch in of(cmds, Launch):
                cpus_used, mem_used = launched_cpus(launch, self.info)
                assert cpus_used <= o.cpus + 1e-9 and mem_used <= o.mem_mb + 1e-9
            return
        t = self.rng.choice(live)
        r = t.launch.range
        if choice < 0.45:
            t.running = True
            self.send(running(t.launch, self.now, t.agent))
        elif choice < 0.7:
            self.progress(t, self.rng.randint(t.next, r.stop))
            t.running = True
            self.send(running(t.launch, self.now, t.agent, **self.report(t)))
        elif choice < 0.93:
            self.progress(t, r.stop)
            del self.tasks[t.launch.task_id]
            data = {**self.report(t), "elapsed": self.rng.choice([0.001, 0.3, 1.5])}
            self.send(TaskStatus(t.launch.task_id, "TASK_FINISHED", self.now,
                                 report=BatchReport.from_data(data)))  # fmt: skip
        elif choice < 0.97 and t.running:
            del self.tasks[t.launch.task_id]
            state = self.rng.choice(["TASK_FAILED", "TASK_LOST"])
            self.send(TaskStatus(t.launch.task_id, state, self.now,
                                 report=BatchReport.from_data(self.report(t))))  # fmt: skip
        elif t.running:
            ex = t.launch.executor_id
            for tid in [k for k, v in self.tasks.items() if v.launch.executor_id == ex]:
                del self.tasks[tid]
            self.send(ExecutorLost(ex, t.agent, 1, self.now))
        elif self.rng.random() < 0.5:
            self.send(Tick(self.now))

    def progress(self, t: SimTask, upto: int) -> None:
        for i in range(t.next, upto):
            self.stored[i] += 1
        t.next = max(t.next, upto)

    def report(self, t: SimTask) -> dict[str, int]:
        return {"next": t.next, "ok": t.next - t.launch.range.start, "failed": 0}

    def run(self, max_steps: int = 100_000) -> None:
        for _ in range(max_steps):
            if self.summaries:
                ok = sum(1 for v in self.stored.values() if v)
                self.send(SummaryDone(self.info.run_id, ok, len(self.written_failed), self.now))
                return
            assert not self.done, self.states
            self.step()
        raise AssertionError("simulation did not finish")


@pytest.mark.parametrize("seed", range(60))
def test_random_runs_cover_every_sequence_exactly_once(seed: int) -> None:
    rng = random.Random(seed)
    info = run_info(
        f"r{seed}",
        sequences=rng.choice([1, 2, 7, 50, 333, 2000]),
        cpus=rng.choice([0.5, 1.0]),
        max_executors=rng.choice([None, 1, 3]),
        max_attempts=rng.choice([1, 2, 3]),
    )
    config = SchedulerConfig(first_batch=rng.choice([1, 4, 8]), growth=rng.choice([2, 16]))
    sim = Sim(info, config, rng)
    sim.run()
    stored = {i for i, n in sim.stored.items() if n}
    failed_ = set(sim.written_failed)
    # Every sequence is stored or written as failed, once, and never both.
    assert stored | failed_ == set(range(info.sequences))
    assert stored.isdisjoint(failed_)
    assert max(sim.stored.values(), default=1) == 1
    assert max(sim.written_failed.values(), default=1) == 1
    assert sim.summaries == 1
    assert sim.states[:1] == ["STAGING"]
    assert sim.states[-2:] == ["SUMMARIZING", "FAILED" if failed_ else "FINISHED"]
    # Attempt-1 ranges are contiguous, start at 0 and never overlap.
    firsts = sorted((t.range for t in sim.launched if t.range.attempt == 1), key=lambda r: r.start)
    assert firsts[0].start == 0 and firsts[-1].stop == info.sequences
    assert all(a.stop == b.start for a, b in itertools.pairwise(firsts))
    assert all(t.range.attempt <= info.max_attempts for t in sim.launched)
    assert sim.state.runs == {} and sim.state.task_run == {}


def test_ten_million_sequences_keep_memory_bounded_by_batches_in_flight() -> None:
    executors = 4
    info = run_info(sequences=10_000_000, max_executors=executors)
    state = SchedulerState(SchedulerConfig(fixed_batch=50_000))
    state.handle(Submit(info, 0.0))
    in_flight: dict[str, TaskLaunch] = {}
    covered = 0
    summary = False
    now = 0.0
    while not summary:
        now += 1.0
        cmds = state.handle(offers(offer(f"a{int(now) % 3}", cpus=2.0), now=now))
        for t in tasks_of(cmds):
            in_flight[t.task_id] = t
        run = state.runs["r1"]
        assert len(run.batches) <= executors * PREFETCH
        assert len(state.task_run) <= executors * PREFETCH
        assert len(run.executors) <= executors and len(state.executor_run) <= executors
        assert len(run.pending) == 0
        for task_id in list(in_flight)[:executors]:
            t = in_flight.pop(task_id)
            covered += len(t.range)
            state.handle(running(t, now, agent="a0"))
            done = state.handle(finished(t, now))
            if of(done, CheckStored):
                done += all_stored(state, now=now)
            summary = bool(of(done, StartSummary))
            assert len(state.history) <= 10
        state.handle(Tick(now))
    assert covered == info.sequences
    assert state.history.maxlen is not None and state.history.maxlen <= 100_000
    assert len(state.task_run) == 0 and len(state.runs["r1"].batches) == 0


# --- blocks, partial summaries, targets and live statistics ------------------------


def _block(info: RunInfo, block: int, values: list[float]) -> tuple[int, BlockPartial]:
    sketch = RunPartials(info.sequences, info.block_size).sketch
    return block, BlockPartial.of(len(values), 0, {"x": values}, sketch)


def finished_with_blocks(task: TaskLaunch, info: RunInfo, value: Any) -> TaskStatus:
    """The batch finished; its blocks' values are ``value(i)`` for sequence ``i``."""
    r = task.range
    blocks = tuple(
        _block(info, b, [value(i) for i in range(b * info.block_size,
                                                 min((b + 1) * info.block_size, info.sequences))])
        for b in range(r.start // info.block_size, math.ceil(r.stop / info.block_size))
    )  # fmt: skip
    data = {"next": r.stop, "ok": len(r), "failed": 0, "elapsed": 0.5}
    return TaskStatus(task.task_id, "TASK_FINISHED", 0.0, report=BatchReport.from_data(data),
                      agent_id="a1", partials=blocks)  # fmt: skip


@pytest.mark.parametrize("fixed", [None, 7, 25])
def test_batches_are_whole_blocks_but_the_runs_last(fixed: int | None) -> None:
    info = run_info(sequences=1005, block_size=10)
    state, tasks = started(info, SchedulerConfig(fixed_batch=fixed, first_batch=3), cpus=4.0)
    seen = list(tasks)
    while tasks:
        task = tasks.pop(0)
        cmds = state.handle(finished(task))
        cmds += state.handle(offers(offer("a1", cpus=4.0)))
        tasks += tasks_of(cmds)
        seen += tasks_of(cmds)
    ranges = sorted((t.range.start, t.range.stop) for t in seen)
    assert ranges[0][0] == 0 and ranges[-1][1] == 1005
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))  # no gap, no overlap
    assert all(start % 10 == 0 and (stop % 10 == 0 or stop == 1005) for start, stop in ranges)


def test_targets_stop_the_run_at_the_first_block_where_they_hold() -> None:
    # x alternates 0/1 within blocks of 10: sem over k values is about 0.5/sqrt(k), so
    # sem <= 0.1 first holds at k = 30 (0.0898; at 20 it is 0.1147).
    info = run_info(sequences=1000, block_size=10, targets=(("x", "sem", 0.1),))
    state, tasks = started(info, SchedulerConfig(fixed_batch=20), cpus=2.0)
    assert [t.range for t in tasks] == [Range(0, 20), Range(20, 40), Range(40, 60),
                                        Range(60, 80)]  # fmt: skip
    cmds = state.handle(finished_with_blocks(tasks[1], info, lambda i: i % 2))  # 20..39 first
    assert not of(cmds, KillTask)  # blocks 2 and 3 wait for blocks 0 and 1
    cmds = state.handle(finished_with_blocks(tasks[0], info, lambda i: i % 2))
    kills = {c.task_id for c in of(cmds, KillTask)}
    assert kills == {t.task_id for t in tasks[2:]} | {tasks[0].task_id}
    assert not tasks_of(state.handle(offers(offer("a1", cpus=2.0))))  # nothing more to do
    for task in tasks[2:]:
        cmds = state.handle(failed(task, state="TASK_KILLED"))
        assert not of(cmds, SaveBatch)  # killed batches are not retried
    (start,) = of(cmds, StartSummary)
    assert (start.stopped, start.has_targets) == (30, True)
    assert start.partials.merged_sequences == 30
    assert start.partials.prefix.outputs["x"].count == 30


def test_the_stopping_point_does_not_depend_on_the_batches() -> None:
    value = lambda i: math.sin(i * 0.7) * (1 + i % 3)  # noqa: E731
    stops = set()
    for fixed in (10, 30, 70):
        info = run_info(sequences=400, block_size=10, targets=(("x", "ci95_halfwidth", 0.25),))
        state, tasks = started(info, SchedulerConfig(fixed_batch=fixed), cpus=2.0)
        summary: list[StartSummary] = []
        while tasks and not summary:
            task = tasks.pop()  # last launched first: blocks arrive out of order
            cmds = state.handle(finished_with_blocks(task, info, value))
            cmds += state.handle(offers(offer("a1", cpus=2.0)))
            tasks += tasks_of(cmds)
            summary = of(cmds, StartSummary)
            for kill in of(cmds, KillTask):
                summary += of(state.handle(TaskStatus(kill.task_id, "TASK_KILLED", 1.0)),
                              StartSummary)  # fmt: skip
        (start,) = summary
        stops.add((start.stopped, json.dumps(start.partials.prefix.to_dict())))
    assert len(stops) == 1 and next(iter(stops))[0] is not None


def test_live_statistics_follow_the_blocks_that_came_in() -> None:
    info = run_info(sequences=100, block_size=10)
    state, tasks = started(info, SchedulerConfig(fixed_batch=20))
    state.handle(running(tasks[0]))
    state.handle(finished_with_blocks(tasks[1], info, float))  # 20..39 before 0..19
    (live,) = of(state.handle(Tick(5.0)), PutLive)
    x = live.live["live"]["x"]
    assert x["count"] == 20 and x["mean"] == pytest.approx(29.5)
    assert x["ci95"] == pytest.approx([29.5 - 1.959964 * x["sem"], 29.5 + 1.959964 * x["sem"]])
    assert live.live["series"] == {}  # the prefix 0.. has nothing yet
    assert not of(state.handle(Tick(10.0)), PutLive)  # nothing new: nothing sent
    state.handle(finished_with_blocks(tasks[0], info, float))
    (live,) = of(state.handle(Tick(15.0)), PutLive)
    ((k, mean, lo, hi),) = live.live["series"]["x"]  # the convergence chart's first point
    assert (k, mean) == (40, 19.5) and lo < mean < hi

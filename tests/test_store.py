"""The store contract, run against SQLite (a temporary file) and Cassandra (a fresh
keyspace on the project's real Cassandra). A few SQLite-only tests come first."""

from __future__ import annotations

import math
import multiprocessing
import random
import struct
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ancho.errors import NotFound, StoreError
from ancho.messages import BatchReport
from ancho.results import SequenceResult
from ancho.store import BatchRecord, ExperimentRecord, RunRecord, Store, open_store
from scheduler.events import (
    Launch,
    Offer,
    Offers,
    RunInfo,
    StoreChecked,
    Submit,
    SummaryDone,
    TaskStatus,
    Tick,
    UpdateRun,
)
from scheduler.state import SchedulerConfig, SchedulerState

# --- helpers -----------------------------------------------------------------------


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ancho.db'}"


@pytest.fixture(params=["sqlite", "cassandra"])
def store(request: pytest.FixtureRequest, url: str) -> Iterator[Store]:
    """The same tests against both stores."""
    if request.param == "cassandra":
        url = request.getfixturevalue("cassandra_url")
    s = open_store(url)
    yield s
    s.close()


def make_run(run_id: str = "r1", created_at: float = 1000.0, **kw: Any) -> RunRecord:
    return RunRecord(
        id=run_id,
        name=kw.pop("name", "pi"),
        spec=kw.pop("spec", {"model": {"source": "/m", "entrypoint": "m:f"}, "sequences": 10}),
        seed=kw.pop("seed", 42),
        sequences=kw.pop("sequences", 10),
        created_at=created_at,
        **kw,
    )


def ok(seq: int, attempt: int = 1, **outputs: Any) -> SequenceResult:
    return SequenceResult(seq, "ok", outputs or {"x": float(seq)}, None, attempt, 0.25)


def with_run(store: Store, *run_ids: str, sequences: int = 100_000) -> Store:
    """Results belong to a run: create the runs a test writes to."""
    for run_id in run_ids:
        store.create_run(make_run(run_id, sequences=sequences))
    return store


def failed(seq: int, attempt: int = 1) -> SequenceResult:
    error = {"type": "ValueError", "message": "bad", "traceback": "Traceback ...\nValueError: bad"}
    return SequenceResult(seq, "failed", {}, error, attempt, 0.5)


def float_from_bits(bits: int) -> float:
    value: float = struct.unpack("<d", struct.pack("<Q", bits))[0]
    return value


def bits_of(value: float) -> int:
    bits: int = struct.unpack("<Q", struct.pack("<d", value))[0]
    return bits


def write_range(store_url: str, run_id: str, start: int, stop: int, barrier: Any) -> None:
    """Child process: open the store afresh and write ``start..stop-1`` in small chunks."""
    s = open_store(store_url)
    barrier.wait()
    for lo in range(start, stop, 50):
        s.write_results(run_id, [ok(i) for i in range(lo, min(lo + 50, stop))])
    s.close()


# --- opening ------------------------------------------------------------------------


def test_open_store_by_url_creates_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "a.db"
    s = open_store(f"sqlite:///{path}")
    assert path.is_file()
    assert s.url == f"sqlite:///{path}"
    s.close()


def test_open_store_with_a_bare_path(tmp_path: Path) -> None:
    s = open_store(str(tmp_path / "b.db"))
    s.create_run(make_run())
    assert open_store(s.url).get_run("r1").id == "r1"


@pytest.mark.parametrize("bad", ["sqlite://relative.db", "cassandra://host/ks", "mysql://host/db"])
def test_unsupported_urls_are_store_errors(bad: str) -> None:
    with pytest.raises(StoreError) as info:
        open_store(bad)
    assert bad in str(info.value)


def test_newer_schema_version_is_refused_with_a_clear_message(url: str) -> None:
    s = open_store(url)
    s.set_meta("schema_version", "99")
    s.close()
    with pytest.raises(StoreError) as info:
        open_store(url)
    text = str(info.value)
    assert "schema version 99" in text and "newer" in text and "upgrade Ancho" in text
    assert url in text


def test_reopening_keeps_data(url: str) -> None:
    s = open_store(url)
    s.create_run(make_run())
    s.write_results("r1", [ok(0)])
    s.close()
    again = open_store(url)
    assert again.get_run("r1").name == "pi"
    assert [r.sequence for r in again.iter_results("r1")] == [0]


# --- runs ---------------------------------------------------------------------------


def test_create_and_get_run_round_trips(store: Store) -> None:
    run = make_run(owner="alice", spec={"model": {"source": "/m"}, "nested": [1, 2.5, None]})
    store.create_run(run)
    got = store.get_run("r1")
    assert got == run
    assert got.state == "QUEUED" and got.outputs is None and not got.kill_requested


def test_get_unknown_run_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound) as info:
        store.get_run("nope")
    assert info.value.http_status == 404 and "nope" in str(info.value)


def test_creating_a_run_twice_is_a_store_error(store: Store) -> None:
    store.create_run(make_run())
    with pytest.raises(StoreError):
        store.create_run(make_run())


def test_list_runs_newest_first_and_by_owner(store: Store) -> None:
    store.create_run(make_run("old", created_at=1.0, owner="alice"))
    store.create_run(make_run("new", created_at=3.0, owner="bob"))
    store.create_run(make_run("mid", created_at=2.0, owner="alice"))
    assert [r.id for r in store.list_runs()] == ["new", "mid", "old"]
    assert [r.id for r in store.list_runs(owner="alice")] == ["mid", "old"]
    assert store.list_runs(owner="carol") == []


def test_update_run_sets_fields(store: Store) -> None:
    store.create_run(make_run())
    store.update_run(
        "r1",
        state="RUNNING",
        ok=5,
        failed=1,
        running=4,
        reason="why",
        started_at=12.5,
        kill_requested=True,
        next_index=9,
        outputs=["a", "b"],
    )
    got = store.get_run("r1")
    assert (got.state, got.ok, got.failed, got.running) == ("RUNNING", 5, 1, 4)
    assert got.reason == "why" and got.started_at == 12.5 and got.finished_at is None
    assert got.kill_requested is True and got.next_index == 9
    assert got.outputs == ["a", "b"]
    store.update_run("r1", state="FINISHED", finished_at=20.0, reason=None)
    got = store.get_run("r1")
    assert got.state == "FINISHED" and got.finished_at == 20.0 and got.reason is None
    assert got.ok == 5  # untouched fields stay


def test_update_of_unknown_run_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.update_run("nope", state="RUNNING")


def test_update_run_accepts_every_field_the_scheduler_writes(store: Store) -> None:
    info = RunInfo("r1", sequences=6)
    state = SchedulerState(SchedulerConfig(fixed_batch=3))
    store.create_run(make_run(sequences=6))
    cmds = state.handle(Submit(info, 0.0))
    cmds += state.handle(Offers((Offer("o1", "a1", "h", 1.0, 1024.0),), 0.0))
    tasks = [t for c in cmds if isinstance(c, Launch) for t in c.tasks]
    for t in tasks:
        cmds += state.handle(TaskStatus(t.task_id, "TASK_RUNNING", 1.0, agent_id="a1"))
    cmds += state.handle(Tick(2.0))
    for t in tasks:
        data = {"next": t.range.stop, "ok": len(t.range), "failed": 0, "elapsed": 1.0}
        cmds += state.handle(TaskStatus(t.task_id, "TASK_FINISHED", 3.0,
                                           report=BatchReport.from_data(data)))  # fmt: skip
    cmds += state.handle(StoreChecked("r1", 6, (), 3.5))
    cmds += state.handle(SummaryDone("r1", 6, 0, 4.0))
    updates = [c for c in cmds if isinstance(c, UpdateRun)]
    assert len(updates) >= 4
    for c in updates:
        store.update_run(c.run_id, **c.fields)
    got = store.get_run("r1")
    assert (got.state, got.ok, got.next_index, got.started_at) == ("FINISHED", 6, 6, 1.0)


def test_update_run_rejects_unknown_fields(store: Store) -> None:
    store.create_run(make_run())
    with pytest.raises(ValueError, match="seed"):
        store.update_run("r1", seed=1)
    assert store.get_run("r1").seed == 42


def test_register_outputs_first_writer_wins(store: Store) -> None:
    store.create_run(make_run())
    assert store.register_outputs("r1", ["price", "hits"]) == ["price", "hits"]
    assert store.register_outputs("r1", ["other"]) == ["price", "hits"]
    assert store.get_run("r1").outputs == ["price", "hits"]


def test_register_outputs_of_unknown_run_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.register_outputs("nope", ["x"])


# --- results ------------------------------------------------------------------------


def test_write_and_read_results(store: Store) -> None:
    with_run(store, "r1")
    store.write_results("r1", [ok(0), failed(1), ok(2, attempt=3)])
    got = list(store.iter_results("r1"))
    assert got == [ok(0), failed(1), ok(2, attempt=3)]
    assert got[1].error is not None and got[1].error["type"] == "ValueError"
    assert got[1].outputs == {}


def test_rewriting_sequences_replaces_them_latest_wins(store: Store) -> None:
    with_run(store, "r1")
    store.write_results("r1", [failed(i, attempt=1) for i in range(10)])
    store.write_results("r1", [ok(i, attempt=2) for i in range(5, 10)])
    store.write_results("r1", [ok(i, attempt=2) for i in range(5, 10)])  # again: no duplicates
    got = list(store.iter_results("r1"))
    assert [r.sequence for r in got] == list(range(10))
    assert [r.status for r in got] == ["failed"] * 5 + ["ok"] * 5
    assert [r.attempt for r in got] == [1] * 5 + [2] * 5
    counts = store.count_results("r1")
    assert (counts.ok, counts.failed) == (5, 5)
    assert counts.by_attempt == {1: 5, 2: 5}


def test_results_of_runs_are_separate(store: Store) -> None:
    with_run(store, "a", "b")
    store.write_results("a", [ok(0), ok(1)])
    store.write_results("b", [ok(0, y=9)])
    assert [r.outputs for r in store.iter_results("b")] == [{"y": 9}]
    assert store.count_results("a").ok == 2
    with pytest.raises(NotFound):
        store.count_results("none")
    with pytest.raises(NotFound):
        list(store.iter_results("none"))


def test_iter_results_pages_across_the_page_boundary_in_order(store: Store) -> None:
    with_run(store, "r1")
    n = 25_000
    order = list(range(n))
    random.Random(1).shuffle(order)
    for lo in range(0, n, 5_000):
        store.write_results("r1", [ok(i) for i in order[lo : lo + 5_000]])
    seqs = [r.sequence for r in store.iter_results("r1")]
    assert seqs == list(range(n))
    assert store.count_results("r1").ok == n


def test_iter_results_pages_over_sparse_sequences(store: Store) -> None:
    with_run(store, "r1")
    store.write_results("r1", [ok(i) for i in range(0, 60_000, 2)])  # 30,000 rows with gaps
    seqs = [r.sequence for r in store.iter_results("r1")]
    assert seqs == list(range(0, 60_000, 2))


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A store with sequences 0..24,999 of run r1 (shared: tests only read it)."""
    s = open_store(f"sqlite:///{tmp_path_factory.mktemp('filled') / 'ancho.db'}")
    with_run(s, "r1", sequences=25_000)
    s.write_results("r1", [ok(i) for i in range(25_000)])
    yield s
    s.close()


@pytest.mark.parametrize(
    ("start", "stop"),
    [(0, None), (9_995, 20_005), (10_000, 10_001), (24_990, None), (7, 7), (30_000, None)],
)
def test_iter_results_start_and_stop_bounds(filled: Store, start: int, stop: int | None) -> None:
    seqs = [r.sequence for r in filled.iter_results("r1", start=start, stop=stop)]
    assert seqs == list(range(start, 25_000 if stop is None else stop))


def test_iter_results_can_be_consumed_lazily(filled: Store) -> None:
    it = filled.iter_results("r1", start=9_999)
    assert [next(it).sequence for _ in range(3)] == [9_999, 10_000, 10_001]


def test_floats_round_trip_exactly(store: Store) -> None:
    with_run(store, "r1")
    rnd = random.Random(7)
    values = [float_from_bits(rnd.getrandbits(64)) for _ in range(2_000)]
    values += [float_from_bits(rnd.getrandbits(52)) for _ in range(200)]  # subnormals
    values += [float_from_bits(1), -float_from_bits(1), 5e-324, 2.2250738585072014e-308]
    values += [0.0, -0.0, math.inf, -math.inf, math.nan, 1.0, 0.1, 1e308, -1.7976931348623157e308]
    store.write_results("r1", [ok(i, v=v) for i, v in enumerate(values)])
    got = [r.outputs["v"] for r in store.iter_results("r1")]
    assert len(got) == len(values)
    for want, have in zip(values, got, strict=True):
        assert type(have) is float
        if math.isnan(want):
            assert math.isnan(have)  # NaN payload bits are not part of the contract
        else:
            assert bits_of(have) == bits_of(want), (want, have)


def test_negative_zero_keeps_its_sign(store: Store) -> None:
    with_run(store, "r1")
    store.write_results("r1", [ok(0, z=-0.0)])
    (r,) = store.iter_results("r1")
    assert math.copysign(1.0, r.outputs["z"]) == -1.0


def test_ints_and_bools_keep_their_types(store: Store) -> None:
    with_run(store, "r1")
    store.write_results("r1", [ok(0, i=3, big=2**63 + 1, neg=-5, t=True, f=False, one=1.0)])
    (r,) = store.iter_results("r1")
    assert r.outputs == {"i": 3, "big": 2**63 + 1, "neg": -5, "t": True, "f": False, "one": 1.0}
    assert [type(v) for v in r.outputs.values()] == [int, int, int, bool, bool, float]


def test_duration_and_attempt_are_stored(store: Store) -> None:
    with_run(store, "r1")
    store.write_results("r1", [SequenceResult(4, "ok", {"x": 1}, None, 3, 1.125)])
    (r,) = store.iter_results("r1")
    assert (r.attempt, r.duration_s) == (3, 1.125)


def test_concurrent_writer_processes_lose_no_rows(url: str) -> None:
    with_run(open_store(url), "r1").close()  # the schema and the run first
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [
        ctx.Process(target=write_range, args=(url, "r1", lo, lo + 3_000, barrier))
        for lo in (0, 3_000)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    s = open_store(url)
    assert [r.sequence for r in s.iter_results("r1")] == list(range(6_000))
    assert s.count_results("r1").ok == 6_000


def test_threads_share_one_store(store: Store) -> None:
    with_run(store, "r1")

    def work(lo: int) -> None:
        for i in range(lo, lo + 500, 25):
            store.write_results("r1", [ok(j) for j in range(i, i + 25)])

    threads = [threading.Thread(target=work, args=(lo,)) for lo in (0, 500, 1000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.sequence for r in store.iter_results("r1")] == list(range(1500))


# --- summaries, events, batches, meta ---------------------------------------------------


def test_summary_put_get_and_replace(store: Store) -> None:
    assert store.get_summary("r1") is None
    summary = {"outputs": {"x": {"count": 3, "mean": 0.5, "quantiles": {"0.5": 0.4}}}}
    store.put_summary("r1", summary)
    assert store.get_summary("r1") == summary
    store.put_summary("r1", {"outputs": {}, "custom": {"k": 1}})
    assert store.get_summary("r1") == {"outputs": {}, "custom": {"k": 1}}


def test_summary_must_be_strict_json(store: Store) -> None:
    with pytest.raises(ValueError):
        store.put_summary("r1", {"mean": math.nan})
    assert store.get_summary("r1") is None


def test_events_in_order_and_after(store: Store) -> None:
    store.append_events("r1", [("scheduler", "info", "one"), ("executor", "warning", "two")])
    store.append_events("other", [("scheduler", "info", "elsewhere")])
    store.append_events("r1", [("model", "error", "three")])
    store.append_events("r1", [])
    events = store.iter_events("r1")
    assert [(e.source, e.level, e.message) for e in events] == [
        ("scheduler", "info", "one"),
        ("executor", "warning", "two"),
        ("model", "error", "three"),
    ]
    assert all(e.run_id == "r1" and e.ts > 0 for e in events)
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert [e.message for e in store.iter_events("r1", after=events[0].id)] == ["two", "three"]
    assert store.iter_events("r1", after=events[-1].id) == []


def test_batches_put_list_replace_delete(store: Store) -> None:
    a = BatchRecord("r1", "r1.t0", 0, 10, 1, "r1.e0", "agent-1")
    b = BatchRecord("r1", "retry-4", 4, 10, 2, "")
    store.put_batch(a)
    store.put_batch(b)
    store.put_batch(BatchRecord("r2", "r2.t0", 0, 5, 1, "r2.e0"))
    assert sorted(store.list_batches("r1"), key=lambda x: x.task_id) == [a, b]
    moved = BatchRecord("r1", "r1.t0", 0, 10, 1, "r1.e0", "agent-2")
    store.put_batch(moved)
    assert sorted(store.list_batches("r1"), key=lambda x: x.task_id) == [moved, b]
    store.delete_batch("r1", "r1.t0")
    assert store.list_batches("r1") == [b]
    store.delete_batch("r1", "missing")  # no error
    assert len(store.list_batches("r2")) == 1


def test_meta_set_get_delete(store: Store) -> None:
    assert store.get_meta("framework_id") is None
    store.set_meta("framework_id", "fw-1")
    assert store.get_meta("framework_id") == "fw-1"
    store.set_meta("framework_id", "fw-2")
    assert store.get_meta("framework_id") == "fw-2"
    store.set_meta("framework_id", None)
    assert store.get_meta("framework_id") is None
    version = sys.modules[type(store).__module__].SCHEMA_VERSION  # SQLite 1, Cassandra 2
    assert store.get_meta("schema_version") == str(version)


def test_partials_put_replace_list(store: Store) -> None:
    store.create_run(RunRecord(id="r1", name="n", spec={}, seed=1, sequences=30))
    store.put_partial("r1", 2, {"x": {"count": 10, "mean": 0.1}})
    store.put_partial("r1", 0, {"x": {"count": 10, "mean": 1 / 3}})
    store.put_partial("r1", 2, {"x": {"count": 10, "mean": 0.2}})  # a retried block
    assert store.list_partials("r1") == {
        0: {"x": {"count": 10, "mean": 1 / 3}},  # floats come back exactly
        2: {"x": {"count": 10, "mean": 0.2}},
    }
    assert list(store.list_partials("r1")) == [0, 2]
    assert store.list_partials("other") == {}


def test_a_follower_gets_a_line_stored_after_a_later_one(cassandra_url: str) -> None:
    """Cassandra's log ids are writers' clocks: a line from a writer whose clock is 5 s
    behind lands below the lines a follower has read, and must still reach it, once."""
    from ancho.store.follow import EventFollower

    store = open_store(cassandra_url)
    try:
        with_run(store, "r1")
        store.append_events("r1", [("scheduler", "info", "first")])
        lines = EventFollower(store, "r1")
        (first,) = lines.poll()
        assert first.message == "first" and lines.poll() == []
        late_id = first.id - 5 * 10**9  # 5 s earlier by the late writer's clock
        store.session.execute(  # type: ignore[attr-defined]
            f"INSERT INTO {store.config.keyspace}.events (run_id, id, ts, source, level,"  # type: ignore[attr-defined]
            " message) VALUES (%s, %s, %s, %s, %s, %s)",
            ("r1", late_id, first.ts - 5, "executor", "info", "late"),
        )
        store.append_events("r1", [("scheduler", "info", "next")])
        assert [e.message for e in lines.poll()] == ["late", "next"]  # oldest id first
        assert lines.poll() == []  # each line once
        assert [e.message for e in store.iter_events("r1", first.id)] == ["next"]  # the old way
    finally:
        store.close()


def test_experiments_are_stored_listed_newest_first_and_found(store: Store) -> None:
    older = ExperimentRecord("x1", "coins", "ada", {"sweep": {"grid": {"p": [0.1, 0.2]}}},
                             [{"p": 0.1}, {"p": 0.2}], ["r1", "r2"], 1000.0)  # fmt: skip
    newer = ExperimentRecord("x2", "dice", "bob", {"sweep": {"points": [{}]}}, [{}], ["r3"],
                             2000.0)  # fmt: skip
    store.create_experiment(older)
    store.create_experiment(newer)
    assert store.get_experiment("x1") == older
    assert [e.id for e in store.list_experiments()] == ["x2", "x1"]
    assert store.list_experiments(owner="ada") == [older]
    assert older.to_dict()["points"] == [{"parameters": {"p": 0.1}, "run": "r1"},
                                         {"parameters": {"p": 0.2}, "run": "r2"}]  # fmt: skip
    with pytest.raises(NotFound):
        store.get_experiment("x3")

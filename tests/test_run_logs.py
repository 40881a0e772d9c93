"""A run's log: the model's output, the executor's records and the scheduler's reasons.

Pure parts first (the scheduler's "why is my run not running" lines, the executor's
line splitter and buffered run log with a fake store), then real ``ancho`` commands
on the embedded cluster: a chatty model, ``ancho logs -f`` latency, the flood cap and a
run too big for the machine.
"""

from __future__ import annotations

import itertools
import os
import re
import statistics
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from e2e import ANCHO, MODELS, ancho, run_id_of, write_spec

from ancho.errors import StoreError
from executor.runlog import LINE_BYTES, LineSplitter, RunLog, RunLogHandler, clip, pump
from scheduler.events import (
    AgentLost,
    Command,
    ExecutorLost,
    Launch,
    Log,
    Offer,
    Offers,
    RunInfo,
    Submit,
    TaskStatus,
)
from scheduler.state import PREFETCH, SchedulerConfig, SchedulerState

# --- the scheduler: why a run is not running ------------------------------------------

_ids = iter(range(10**9))


def _offer(agent: str = "a1", cpus: float = 2.0, mem_mb: float = 22000.0) -> Offer:
    return Offer(f"o{next(_ids)}", agent, f"host-{agent}", cpus, mem_mb)


def _offers(*items: Offer, now: float = 1.0) -> Offers:
    return Offers(tuple(items), now)


def _logs(cmds: list[Command]) -> list[Log]:
    return [c for c in cmds if isinstance(c, Log)]


def _waiting(cmds: list[Command]) -> list[str]:
    return [c.message for c in _logs(cmds) if c.message.startswith("waiting:")]


def test_a_run_bigger_than_any_offer_says_so_once() -> None:
    state = SchedulerState()
    state.handle(Submit(RunInfo("r1", 100, cpus=4.0, mem_mb=512), 0.0))
    first = state.handle(_offers(_offer(cpus=2.0, mem_mb=22000.0)))
    assert _waiting(first) == [
        "waiting: no offer fits 4 cpus / 512 MB per executor; offers hold at most 2 cpus / 22000 MB"
    ]
    assert [c.level for c in _logs(first)] == ["warning"]
    assert all(c.run_id == "r1" for c in _logs(first))
    # The same offer again: nothing new to say.
    assert _waiting(state.handle(_offers(_offer(cpus=2.0, mem_mb=22000.0)))) == []
    # Batch tasks' slices coming and going: no news either.
    assert _waiting(state.handle(_offers(_offer(cpus=2.02, mem_mb=22002.0)))) == []
    assert _waiting(state.handle(_offers(_offer(cpus=1.99, mem_mb=21999.0)))) == []
    # Another agent's smaller offer does not change the largest one.
    assert _waiting(state.handle(_offers(_offer("a2", cpus=1.0, mem_mb=1000.0)))) == []
    # The largest changes: said again, once.
    changed = state.handle(_offers(_offer(cpus=3.0, mem_mb=22000.0)))
    assert _waiting(changed) == [
        "waiting: no offer fits 4 cpus / 512 MB per executor; offers hold at most 3 cpus / 22000 MB"
    ]
    assert _waiting(state.handle(_offers(_offer(cpus=3.0, mem_mb=22000.0)))) == []


def test_memory_too_big_and_lost_agents() -> None:
    state = SchedulerState()
    state.handle(Submit(RunInfo("r1", 100, cpus=1.0, mem_mb=65536), 0.0))
    cmds = state.handle(_offers(_offer("a1", cpus=8.0, mem_mb=4096.0)))
    assert _waiting(cmds) == [
        "waiting: no offer fits 1 cpus / 65536 MB per executor; offers hold at most 8 cpus /"
        " 4096 MB"
    ]
    assert not [c for c in cmds if isinstance(c, Launch)]
    # Two agents: the most cpus of one, the most memory of the other; neither fits both.
    cmds = state.handle(_offers(_offer("a2", cpus=1.0, mem_mb=65000.0)))
    assert _waiting(cmds) == [
        "waiting: no offer fits 1 cpus / 65536 MB per executor; offers hold at most 8 cpus /"
        " 65000 MB"
    ]
    state.handle(AgentLost("a2", 2.0))
    assert list(state.offered) == ["a1"]


def test_no_waiting_line_when_an_offer_fits_or_the_run_has_executors() -> None:
    state = SchedulerState(SchedulerConfig(fixed_batch=10))
    state.handle(Submit(RunInfo("r1", 1000, cpus=1.0, mem_mb=512, max_executors=1), 0.0))
    cmds = state.handle(_offers(_offer(cpus=1.0, mem_mb=512.0)))
    assert [c for c in cmds if isinstance(c, Launch)] and _waiting(cmds) == []
    # Its one executor runs; smaller offers later are no reason to complain.
    assert _waiting(state.handle(_offers(_offer("a2", cpus=0.5, mem_mb=100.0)))) == []


def test_a_run_that_fits_but_lost_the_room_to_another_run_is_not_waiting() -> None:
    state = SchedulerState(SchedulerConfig(fixed_batch=10))
    state.handle(Submit(RunInfo("r1", 1000, cpus=2.0, mem_mb=512, max_executors=1), 0.0))
    state.handle(Submit(RunInfo("r2", 1000, cpus=2.0, mem_mb=512, max_executors=1), 0.0))
    cmds = state.handle(_offers(_offer(cpus=2.0, mem_mb=1024.0)))
    assert [t.run_id for c in cmds if isinstance(c, Launch) for t in c.tasks] == ["r1"] * PREFETCH
    assert _waiting(cmds) == []  # r2 fits the offer; it just came second


def test_waiting_is_said_again_after_the_run_had_executors() -> None:
    state = SchedulerState(SchedulerConfig(fixed_batch=10))
    state.handle(Submit(RunInfo("r1", 1000, cpus=2.0, mem_mb=512), 0.0))
    assert _waiting(state.handle(_offers(_offer(cpus=1.0))))
    cmds = state.handle(_offers(_offer(cpus=2.0)))
    tasks = [t for c in cmds if isinstance(c, Launch) for t in c.tasks]
    assert tasks and _waiting(cmds) == []
    for t in tasks:
        state.handle(TaskStatus(t.task_id, "TASK_RUNNING", 2.0))
    state.handle(ExecutorLost(tasks[0].executor_id, "a1", 137, 3.0))
    assert _waiting(state.handle(_offers(_offer(cpus=1.0), now=4.0)))


def test_an_executor_that_cannot_start_says_why_once() -> None:
    state = SchedulerState(SchedulerConfig(fixed_batch=10))
    state.handle(Submit(RunInfo("r1", 1000, containerizer="docker", image="ancho/nope:1"), 0.0))
    cmds = state.handle(_offers(_offer(cpus=1.0)))
    tasks = [t for c in cmds if isinstance(c, Launch) for t in c.tasks]
    assert len(tasks) == PREFETCH
    reason = "Failed to launch container: image 'ancho/nope:1' not found (build it with make image)"
    logs: list[Log] = []
    for t in tasks:
        logs += _logs(
            state.handle(
                TaskStatus(t.task_id, "TASK_FAILED", 1.0, "REASON_CONTAINER_LAUNCH_FAILED", reason)
            )
        )
    started = [c for c in logs if "could not start" in c.message]
    assert [(c.level, c.message) for c in started] == [
        (
            "error",
            f"executor {tasks[0].executor_id} could not start: TASK_FAILED"
            f" REASON_CONTAINER_LAUNCH_FAILED {reason}",
        )
    ]
    assert all(reason in c.message for c in logs)  # the retry lines carry it as well


# --- the executor: lines, caps, flushing -------------------------------------------------


def test_line_splitter_joins_partial_lines_and_cuts_long_ones() -> None:
    s = LineSplitter(limit=10)
    assert s.feed(b"one\ntw") == ["one"]
    assert s.feed(b"o\r\nthree\n\n") == ["two", "three", ""]
    assert s.feed(b"x" * 25) == ["x" * 10 + " [… cut at 10 bytes]"]
    assert s.feed(b"yyy\nlast") == []  # the rest of the cut line is skipped
    assert s.feed(b" one") == []
    assert s.end() == ["last one"]
    assert s.end() == []
    assert s.feed("é€\n".encode()) == ["é€"]
    assert LineSplitter(limit=3).feed("é€\n".encode()) == ["é [… cut at 3 bytes]"]


def test_clip() -> None:
    assert clip("short") == "short"
    long = "é" * LINE_BYTES
    cut = clip(long)
    assert cut.endswith(f"[… cut at {LINE_BYTES} bytes]") and len(cut.encode()) < LINE_BYTES + 40


class FakeStore:
    """Records append_events calls; can be told to fail."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, list[tuple[str, str, str]]]] = []
        self.fail = False
        self.lock = threading.Lock()

    def append_events(self, run_id: str, events: Iterable[tuple[str, str, str]]) -> None:
        if self.fail:
            raise StoreError("the store is away")
        with self.lock:
            self.calls.append((time.monotonic(), list(events)))

    def events(self) -> list[tuple[str, str, str]]:
        with self.lock:
            return [e for _, batch in self.calls for e in batch]


def _runlog(store: FakeStore, **kw: Any) -> RunLog:
    return RunLog("r1", lambda: store, tag="e0", **kw)  # type: ignore[arg-type,return-value]


def test_run_log_caps_model_output_with_one_notice() -> None:
    store = FakeStore()
    log = _runlog(store, model_lines=5)
    assert log.model_lines("info", ["a", "b", "c"]) is True
    assert log.model_lines("warning", ["d", "e"]) is True  # exactly at the cap: nothing dropped
    assert log.model_lines("info", ["f", "g"]) is False
    assert log.model_lines("info", ["h"]) is False
    log.executor_line("info", "still logged")
    log.close()
    events = store.events()
    assert events[:5] == [
        ("model", "info", "[e0] a"),
        ("model", "info", "[e0] b"),
        ("model", "info", "[e0] c"),
        ("model", "warning", "[e0] d"),
        ("model", "warning", "[e0] e"),
    ]
    notice = events[5]
    assert notice[:2] == ("executor", "warning") and "model output over 5 lines" in notice[2]
    assert events[6:] == [("executor", "info", "[e0] still logged")]
    assert log.dropped == 3


def test_run_log_flushes_at_most_every_half_second_and_at_once_after_quiet() -> None:
    store = FakeStore()
    log = _runlog(store, flush_s=0.5).start()
    t0 = time.monotonic()
    log.model_lines("info", ["first"])
    deadline = t0 + 2
    while not store.calls and time.monotonic() < deadline:
        time.sleep(0.005)
    assert store.calls and store.calls[0][0] - t0 < 0.2  # a line after quiet goes at once
    end = time.monotonic() + 1.6
    n = 0
    while time.monotonic() < end:  # a steady stream: written every 0.5 s
        log.model_lines("info", [f"line {n}"])
        n += 1
        time.sleep(0.002)
    log.close()
    times = [t for t, _ in store.calls][:-1]  # the last write is close()'s, at once
    assert 3 <= len(times) <= 5
    assert min(b - a for a, b in itertools.pairwise(times)) > 0.45
    lines = [f"[e0] line {i}" for i in range(n)]
    assert [m for _, _, m in store.events()] == ["[e0] first", *lines]


def test_run_log_store_errors_are_dropped_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeStore()
    store.fail = True
    log = _runlog(store, flush_s=0.01).start()
    log.model_lines("info", ["lost"])
    time.sleep(0.2)
    store.fail = False
    log.model_lines("info", ["kept"])
    log.close()
    assert [m for _, _, m in store.events()] == ["[e0] kept"]
    assert log.lost == 1
    assert "1 lines not stored: the store is away" in caplog.text


def test_run_log_opens_the_store_lazily_and_retries_a_failed_open() -> None:
    store = FakeStore()
    opens: list[int] = []

    def open_store() -> FakeStore:
        opens.append(1)
        if len(opens) == 1:
            raise StoreError("not yet")
        return store

    log = RunLog("r1", open_store, flush_s=0.01).start()  # type: ignore[arg-type]
    assert opens == []
    log.executor_line("info", "one")
    time.sleep(0.2)
    log.executor_line("info", "two")
    log.close()
    assert [m for _, _, m in store.events()] == ["two"] and len(opens) == 2


def test_handler_puts_records_with_tracebacks_in_the_log() -> None:
    import logging

    store = FakeStore()
    log = _runlog(store)
    logger = logging.getLogger("ancho.executor.test-run-logs")
    handler = RunLogHandler(log)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)  # the handler, not the logger, keeps INFO and above
    try:
        logger.debug("not this")
        logger.info("batch %s started", "t1")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("batch failed")
    finally:
        logger.removeHandler(handler)
    log.close()
    events = store.events()
    assert events[0] == ("executor", "info", "[e0] batch t1 started")
    assert events[1][:2] == ("executor", "error")
    text = events[1][2]
    assert text.startswith("[e0] batch failed\nTraceback") and "ValueError: boom" in text


def test_pump_copies_everything_and_logs_lines(tmp_path: Path) -> None:
    store = FakeStore()
    log = _runlog(store, model_lines=3)
    src_r, src_w = os.pipe()
    mirror = (tmp_path / "mirror").open("wb")
    thread = threading.Thread(target=pump, args=(src_r, mirror.fileno(), "info", log))
    thread.start()
    data = b"".join(f"line {i}\n".encode() for i in range(10)) + b"tail"
    for k in range(0, len(data), 7):
        os.write(src_w, data[k : k + 7])
    os.close(src_w)
    thread.join(5)
    mirror.close()
    log.close()
    assert (tmp_path / "mirror").read_bytes() == data
    model = [m for s, _, m in store.events() if s == "model"]
    assert model == ["[e0] line 0", "[e0] line 1", "[e0] line 2"]
    with pytest.raises(OSError):
        os.fstat(src_r)  # the pump closed its end


# --- end to end: real ancho commands ------------------------------------------------------

_LINE = re.compile(r"^\d\d:\d\d:\d\d (\w+) (\w+): (.*)$")
_QUIET = {"ANCHO_SPARK_WARMUP": "0"}


def _parse(text: str) -> list[tuple[str, str, str]]:
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            out.append((m[1], m[2], m[3]))
    return out


def _spec(tmp_path: Path, sequences: int, **extra: Any) -> Path:
    spec = {
        "model": {"source": str(MODELS / "chatty"), "entrypoint": "model:simulate"},
        "sequences": sequences,
        **extra,
    }
    return write_spec(tmp_path, spec)


def _start(tmp_path: Path, spec: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([ANCHO, "run", str(spec)], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, **_QUIET})  # fmt: skip
    assert proc.stdout is not None
    return proc, proc.stdout.readline().split()[1]


def _kill(tmp_path: Path, proc: subprocess.Popen[str], rid: str) -> None:
    assert ancho("kill", rid, cwd=tmp_path).code == 0
    assert proc.wait(timeout=90) == 1


@pytest.mark.slow
def test_model_output_and_executor_lines_are_in_the_run_log(tmp_path: Path) -> None:
    n = 40
    run = ancho("run", str(_spec(tmp_path, n)), cwd=tmp_path)
    assert run.code == 0, run.stderr
    rid = run_id_of(run)
    logs = ancho("logs", rid, cwd=tmp_path)
    assert logs.code == 0
    lines = _parse(logs.stdout)
    assert len(lines) == len(logs.stdout.splitlines())  # every line is `HH:MM:SS src level: msg`
    out = [m for s, lv, m in lines if (s, lv) == ("model", "info")]
    err = [m for s, lv, m in lines if (s, lv) == ("model", "warning")]
    printed = sorted(int(m.split()[3]) for m in out if "chatty sequence" in m)
    assert printed == list(range(n))
    assert all(re.match(r"\[e\d+\] chatty sequence \d+ printed at ", m) for m in out)
    assert sorted(int(m.split()[-1]) for m in err) == list(range(0, n, 10))
    starts = [m for s, lv, m in lines if (s, lv) == ("executor", "info") and "starting:" in m]
    assert starts and all(f"run={rid}" in m for m in starts)
    assert ("scheduler", "info", f"run queued: {n} sequences") in lines
    assert ("scheduler", "info", "run finished") in lines


@pytest.mark.slow
def test_follow_shows_a_new_model_line_within_a_second(tmp_path: Path) -> None:
    spec = _spec(tmp_path, 100_000, parameters={"sleep_s": 0.1}, resources={"max_executors": 1})
    proc, rid = _start(tmp_path, spec)
    follow = None
    try:
        follow = subprocess.Popen([ANCHO, "logs", rid, "-f"], cwd=tmp_path, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
        assert follow.stdout is not None
        started = time.time()
        delays: list[float] = []
        deadline = time.monotonic() + 120
        for line in follow.stdout:
            received = time.time()
            m = re.search(r"chatty sequence \d+ printed at ([\d.]+)$", line)
            if m and float(m[1]) > started + 0.5:  # printed after `logs -f` was running
                delays.append(received - float(m[1]))
            if len(delays) >= 20 or time.monotonic() > deadline:
                break
        assert len(delays) >= 20, "no model lines came through `ancho logs -f`"
        print(f"ancho logs -f: median {statistics.median(delays):.3f} s, max {max(delays):.3f} s")
        assert statistics.median(delays) < 1.0
        assert max(delays) < 2.0
    finally:
        if follow is not None:
            follow.kill()
            follow.wait()
        _kill(tmp_path, proc, rid)


@pytest.mark.slow
def test_a_flood_of_model_output_is_capped(tmp_path: Path) -> None:
    spec = _spec(tmp_path, 100, parameters={"lines": 1000}, resources={"max_executors": 1})
    t0 = time.monotonic()
    run = ancho("run", str(spec), cwd=tmp_path, env=_QUIET)
    assert run.code == 0, run.stderr
    rid = run_id_of(run)
    lines = _parse(ancho("logs", rid, cwd=tmp_path).stdout)
    model = [m for s, _, m in lines if s == "model"]
    notices = [m for s, _, m in lines if s == "executor" and "model output over" in m]
    assert len(model) == 10_000 and len(notices) == 1, (len(model), notices)
    assert "model output over 10000 lines" in notices[0]
    print(f"100,100 lines of model output: run took {time.monotonic() - t0:.1f} s")
    # The executor's own stdout (the Mesos sandbox file) still has every line.
    stdout = [p for p in (tmp_path / ".ancho").rglob("stdout") if "executors" in str(p)]
    assert len(stdout) == 1
    with stdout[0].open("rb") as fh:
        assert sum(1 for _ in fh) == 100 * 1001


@pytest.mark.slow
def test_a_run_too_big_for_any_offer_says_why(tmp_path: Path) -> None:
    spec = _spec(tmp_path, 10, resources={"cpus": 64})
    proc, rid = _start(tmp_path, spec)
    try:
        deadline = time.monotonic() + 60
        while True:
            lines = _parse(ancho("logs", rid, cwd=tmp_path).stdout)
            waiting = [m for s, lv, m in lines if s == "scheduler" and m.startswith("waiting:")]
            if waiting or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert waiting, lines
        assert waiting[0].startswith("waiting: no offer fits 64 cpus / 512 MB per executor;")
        assert re.search(r"offers hold at most [\d.]+ cpus / \d+ MB$", waiting[0]), waiting
        assert ancho("status", rid, cwd=tmp_path).json()["state"] == "QUEUED"
    finally:
        _kill(tmp_path, proc, rid)
    assert ancho("status", rid, cwd=tmp_path).json()["state"] == "KILLED"
    lines = _parse(ancho("logs", rid, cwd=tmp_path).stdout)
    assert len([m for _, _, m in lines if m.startswith("waiting:")]) == 1

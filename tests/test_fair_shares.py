"""Fair shares between users in the pure state machine: dominant resource fairness,
priorities within a user, draining at batch boundaries, quotas; by simulation."""

from __future__ import annotations

import json
import math
import random
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ancho import cli
from ancho.messages import BatchReport
from ancho.store import open_store
from ancho.users import quotas
from scheduler.events import (
    Command,
    ExecutorLost,
    KillTask,
    Launch,
    Offer,
    Offers,
    Quotas,
    RunInfo,
    StoreChecked,
    Submit,
    SummaryDone,
    TaskLaunch,
    TaskStatus,
    Tick,
    UpdateRun,
)
from scheduler.events import StopExecutor as Stop
from scheduler.shares import fair_level
from scheduler.state import PREFETCH, TASK_CPUS, TASK_MEM_MB, SchedulerConfig, SchedulerState

# --- a small Mesos-like cluster ------------------------------------------------------


@dataclass
class SimExecutor:
    executor_id: str
    run_id: str
    agent: str
    cpus: float
    mem_mb: float
    queue: deque[TaskLaunch] = field(default_factory=deque)
    current: TaskLaunch | None = None
    busy_until: float = 0.0
    started_at: float = 0.0
    #: The running batch was killed: it ends after this many sequences.
    cut_at: int | None = None


@dataclass
class Cluster:
    """Agents of ``cpus`` each; executors run their batches one after another, each
    sequence taking ``seq_s``; every round offers each agent's free cpus. As the real
    executor does, a killed running batch finishes the sequence it is computing, stores
    what it has and ends TASK_KILLED."""

    agents: int
    cpus: float
    mem_mb: float = 10.0**6
    seq_s: float = 0.01
    now: float = 0.0
    state: SchedulerState = field(
        default_factory=lambda: SchedulerState(SchedulerConfig(fixed_batch=20))
    )
    executors: dict[str, SimExecutor] = field(default_factory=dict)
    stored: Counter[tuple[str, int]] = field(default_factory=Counter)
    finished: dict[str, float] = field(default_factory=dict)
    infos: dict[str, RunInfo] = field(default_factory=dict)
    offer_seq: int = 0
    launched: list[TaskLaunch] = field(default_factory=list)
    killed: set[str] = field(default_factory=set)

    def send(self, event: object) -> None:
        for cmd in self.state.handle(event):  # type: ignore[arg-type]
            self.carry_out(cmd)

    def submit(self, info: RunInfo) -> None:
        self.infos[info.run_id] = info
        self.send(Submit(info, self.now))

    def used(self, agent: str) -> tuple[float, float]:
        """What the agent's executors hold: each its resources less PREFETCH task
        slices, and a slice per batch it holds (as the framework's launches ask)."""
        cpus = mem = 0.0
        for e in self.executors.values():
            if e.agent == agent:
                held = len(e.queue) + (e.current is not None) - PREFETCH
                cpus += e.cpus + TASK_CPUS * held
                mem += e.mem_mb + TASK_MEM_MB * held
        return cpus, mem

    def carry_out(self, cmd: Command) -> None:
        match cmd:
            case Launch():
                self.launched.extend(cmd.tasks)
                for task in cmd.tasks:
                    ex = self.executors.get(task.executor_id)
                    if ex is None:
                        assert task.new_executor
                        ex = SimExecutor(task.executor_id, task.run.run_id, cmd.agent_id,
                                         task.run.cpus, task.run.mem_mb)  # fmt: skip
                        self.executors[task.executor_id] = ex
                    ex.queue.append(task)
                cpus, mem = self.used(cmd.agent_id)
                assert cpus <= self.cpus + 1e-6 and mem <= self.mem_mb + 1e-6, "over-committed"
            case KillTask():
                self.killed.add(cmd.task_id)
                for ex in self.executors.values():
                    task = ex.current
                    if task is not None and task.task_id == cmd.task_id and ex.cut_at is None:
                        done = math.ceil((self.now - ex.started_at) / self.seq_s - 1e-9)
                        ex.cut_at = min(done, len(task.range))
                        ex.busy_until = ex.started_at + ex.cut_at * self.seq_s
            case Stop():
                ex = self.executors.pop(cmd.executor_id, None)
                if ex is not None:
                    assert ex.current is None and not ex.queue, "stopped with work"
                    self.send(ExecutorLost(ex.executor_id, ex.agent, 0, self.now))
            case UpdateRun():
                if cmd.fields.get("state") == "SUMMARIZING":
                    self.send(SummaryDone(cmd.run_id, 0, 0, self.now))
                if cmd.fields.get("state") in ("FINISHED", "FAILED", "KILLED"):
                    self.finished[cmd.run_id] = self.now
            case _:
                name = type(cmd).__name__
                if name == "CheckStored":
                    info = self.infos[cmd.run_id]  # type: ignore[attr-defined]
                    n = sum(1 for i in range(info.sequences) if self.stored[(info.run_id, i)])
                    self.send(StoreChecked(info.run_id, n, (), self.now))

    def step(self, dt: float = 0.1) -> None:
        """Batches progress by ``dt``; then every agent's free cpus are offered."""
        self.now += dt
        for ex in list(self.executors.values()):
            while ex.executor_id in self.executors:
                if ex.current is not None and ex.busy_until <= self.now:
                    task, ex.current = ex.current, None
                    r = task.range
                    stop = r.stop if ex.cut_at is None else r.start + ex.cut_at
                    for i in range(r.start, stop):
                        self.stored[(task.run.run_id, i)] += 1
                    report = BatchReport(stop, stop - r.start, 0, (stop - r.start) * self.seq_s)
                    ended = "TASK_FINISHED" if ex.cut_at is None else "TASK_KILLED"
                    ex.cut_at = None
                    self.send(TaskStatus(task.task_id, ended, self.now,
                                         report=report, agent_id=ex.agent))  # fmt: skip
                    continue
                if ex.current is None and ex.queue:
                    task = ex.queue.popleft()
                    if task.task_id in self.killed:
                        self.send(TaskStatus(task.task_id, "TASK_KILLED", self.now,
                                             message="killed before it started",
                                             agent_id=ex.agent))  # fmt: skip
                        continue
                    ex.current, ex.started_at = task, self.now
                    ex.busy_until = self.now + len(task.range) * self.seq_s
                    self.send(TaskStatus(task.task_id, "TASK_RUNNING", self.now,
                                         report=BatchReport(task.range.start),
                                         agent_id=ex.agent))  # fmt: skip
                    continue
                break
        batch = []
        for i in range(self.agents):
            agent = f"a{i}"
            cpus, mem = self.used(agent)
            if self.cpus - cpus >= TASK_CPUS - 1e-9 and self.mem_mb - mem >= TASK_MEM_MB - 1e-9:
                self.offer_seq += 1
                batch.append(Offer(f"o{self.offer_seq}", agent, agent, self.cpus - cpus,
                                   self.mem_mb - mem))  # fmt: skip
        self.send(Offers(tuple(batch), self.now))
        self.send(Tick(self.now))

    def cpus_of(self, owner: str) -> float:
        return sum(e.cpus for e in self.executors.values()
                   if self.infos[e.run_id].owner == owner)  # fmt: skip

    def executors_of(self, owner: str) -> int:
        return sum(1 for e in self.executors.values() if self.infos[e.run_id].owner == owner)

    def run_until(self, done: object, limit_s: float = 600.0) -> None:
        while not done() and self.now < limit_s:  # type: ignore[operator]
            self.step()
        assert done(), f"not done after {limit_s} simulated seconds"  # type: ignore[operator]


def info(run_id: str, owner: str, sequences: int = 2000, cpus: float = 1.0, mem_mb: int = 16,
         **kw: object) -> RunInfo:  # fmt: skip
    return RunInfo(run_id, sequences, cpus=cpus, mem_mb=mem_mb, owner=owner, **kw)  # type: ignore[arg-type]


# --- the fair level -------------------------------------------------------------------


def test_fair_level_fills_water_so_small_demands_leave_the_rest_to_others() -> None:
    assert fair_level({"a": math.inf, "b": math.inf}) == 0.5
    assert fair_level({"a": 0.1, "b": math.inf, "c": math.inf}) == pytest.approx(0.45)
    assert fair_level({"a": 0.2, "b": 0.3}) == math.inf  # all get what they can use
    assert fair_level({"a": math.inf}) == 1.0


# --- between users ----------------------------------------------------------------------


def test_an_idle_cluster_is_used_whole_by_whoever_is_there() -> None:
    cluster = Cluster(agents=4, cpus=4)
    cluster.submit(info("r1", "ann"))
    for _ in range(5):
        cluster.step()
    assert cluster.cpus_of("ann") == 16


def test_a_second_user_gets_half_at_the_next_batch_boundaries_and_nothing_is_lost() -> None:
    cluster = Cluster(agents=4, cpus=4)
    cluster.submit(info("big", "ann", sequences=20_000))
    for _ in range(5):
        cluster.step()
    assert cluster.cpus_of("ann") == 16
    cluster.submit(info("small", "bob", sequences=2000))
    took = cluster.now
    cluster.run_until(lambda: cluster.cpus_of("bob") == 8, limit_s=took + 2.0)
    # A batch of 20 sequences lasts 0.2 s: draining took about one batch, not the run.
    assert cluster.now - took <= 1.0
    assert cluster.cpus_of("ann") == 8
    cluster.run_until(lambda: {"big", "small"} <= cluster.finished.keys())
    for run_id, n in (("big", 20_000), ("small", 2000)):
        assert [cluster.stored[(run_id, i)] for i in range(n)] == [1] * n
    # Bob alone on 8 of 16 cores: 2000 x 10 ms / 8 = 2.5 s, plus a little.
    assert cluster.finished["small"] - took < 2.5 * 1.5


def test_the_drf_papers_example_gives_each_user_its_dominant_share() -> None:
    """Ghodsi et al.: 9 cpus and 18 GB; A's executors take <1 cpu, 4 GB> (memory is
    its dominant resource), B's <3 cpus, 1 GB>. DRF gives A three, B two: both
    dominant shares 2/3 (A: 12 of 18 GB, B: 6 of 9 cpus), whoever came first."""
    cluster = Cluster(agents=1, cpus=9, mem_mb=18 * 1024)
    cluster.submit(info("ra", "a", sequences=50_000, cpus=1, mem_mb=4 * 1024))
    for _ in range(3):
        cluster.step()
    assert cluster.executors_of("a") == 4  # alone: as many as fit (memory: 4 of 4.5)
    cluster.submit(info("rb", "b", sequences=50_000, cpus=3, mem_mb=1024))
    for _ in range(20):
        cluster.step()
    assert (cluster.executors_of("a"), cluster.executors_of("b")) == (3, 2)


def test_a_users_runs_take_offers_by_priority_then_age() -> None:
    cluster = Cluster(agents=1, cpus=2)
    cluster.submit(info("old", "ann", sequences=400, created_at=1.0))
    cluster.submit(info("urgent", "ann", sequences=400, priority=90, created_at=2.0))
    cluster.submit(info("young", "ann", sequences=400, created_at=3.0))
    cluster.step()
    on = {e.run_id for e in cluster.executors.values()}
    assert on == {"urgent"}  # the whole cluster
    cluster.run_until(lambda: len(cluster.finished) == 3)
    assert cluster.finished["urgent"] < cluster.finished["old"] < cluster.finished["young"]


def test_a_quota_caps_a_users_cores_and_lowering_it_drains_the_excess() -> None:
    cluster = Cluster(agents=2, cpus=4)
    cluster.send(Quotas((("ann", 3.0),), 0.0))
    cluster.submit(info("r1", "ann", sequences=20_000))
    for _ in range(5):
        cluster.step()
    assert cluster.cpus_of("ann") == 3
    cluster.send(Quotas((("ann", 1.0),), cluster.now))
    for _ in range(5):
        cluster.step()
    assert cluster.cpus_of("ann") == 1
    cluster.send(Quotas((), cluster.now))  # lifted
    for _ in range(5):
        cluster.step()
    assert cluster.cpus_of("ann") == 8


def test_a_draining_executors_batches_run_again_from_where_they_stopped() -> None:
    cluster = Cluster(agents=1, cpus=2)
    cluster.submit(info("big", "ann", sequences=4000))
    cluster.step()
    cluster.step()  # launched, then started
    queued = {t.task_id: t for e in cluster.executors.values() for t in e.queue}
    running = {e.current.task_id: e.current for e in cluster.executors.values() if e.current}
    assert len(queued) == 2 and len(running) == 2
    cluster.step(0.035)  # 3.5 sequences into the running batches
    cluster.submit(info("small", "bob", sequences=100))  # one stops after its 4th
    # One executor gives its place: its queued batch and its running one are killed.
    killed = {**queued, **running}
    assert len(cluster.killed) == 2 and cluster.killed <= killed.keys()
    [cut] = [killed[t] for t in cluster.killed if t in running]
    [dropped] = [killed[t] for t in cluster.killed if t in queued]
    cluster.run_until(lambda: {"big", "small"} <= cluster.finished.keys())
    assert all(cluster.stored[("big", i)] == 1 for i in range(4000))  # none lost, none twice
    again = [(t.range.start, t.range.stop, t.range.attempt) for t in cluster.launched
             if t.run_id == "big" and t.task_id not in killed]  # fmt: skip
    assert (dropped.range.start, dropped.range.stop, 1) in again
    assert (cut.range.start + 4, cut.range.stop, 1) in again


@dataclass
class Checked:
    """How often the DRF invariant was looked at, and the worst gap seen."""

    looks: int = 0
    worst: float = 0.0


@pytest.mark.parametrize("seed", range(8))
def test_many_users_and_runs_share_by_dominant_resource_fairness(seed: int) -> None:
    """Users with random runs (sizes, priorities, executor sizes and limits): while
    work remains, no user waits below the fair level while another holds more than it
    by more than the largest executor; every sequence is stored exactly once."""
    rng = random.Random(seed)
    cluster = Cluster(agents=6, cpus=4)
    users = [f"u{i}" for i in range(rng.randint(3, 9))]
    runs: list[RunInfo] = []
    for i in range(rng.randint(len(users), 30)):
        runs.append(info(f"r{i}", rng.choice(users), sequences=rng.randint(1000, 20_000),
                         priority=rng.randint(0, 100),
                         created_at=float(i),
                         max_executors=rng.choice([None, None, 2, 8])))  # fmt: skip
    pending = sorted(runs, key=lambda r: rng.random())
    checked = Checked()
    while pending or len(cluster.finished) < len(runs):
        if pending and rng.random() < 0.3:
            cluster.submit(pending.pop())
        cluster.step()
        if cluster.now > 900:
            raise AssertionError("simulation did not finish")
        _check_drf(cluster, checked)
    assert checked.looks > 0
    for r in runs:
        assert [cluster.stored[(r.run_id, i)] for i in range(r.sequences)] == [1] * r.sequences


def _check_drf(cluster: Cluster, checked: Checked) -> None:
    """The invariant, looked at once shares have settled (2 s after the last change in
    who is waiting): a user that could use more is never below another user's share by
    more than the largest executor (a user's share counts its active executors)."""
    state = cluster.state
    total = cluster.agents * cluster.cpus
    waiting = {
        r.info.owner for r in state.runs.values()
        if r.has_work() and len(r.executors) < (r.info.max_executors or math.inf)
    }  # fmt: skip
    key = frozenset(waiting)
    if getattr(cluster, "_key", None) != key:
        cluster._key = key  # type: ignore[attr-defined]
        cluster._since = cluster.now  # type: ignore[attr-defined]
        return
    if cluster.now - cluster._since < 2.0 or not waiting:  # type: ignore[attr-defined]
        return
    held = {o: state.shares.user(o).cpus / total for o in state.owner_runs}
    largest = max(r.info.cpus for r in state.runs.values()) / total
    checked.looks += 1
    for owner in waiting:
        for other, share in held.items():
            gap = share - held[owner] - largest
            checked.worst = max(checked.worst, gap)
            assert gap <= 1e-9, (owner, other, held)


# --- quotas from the CLI -------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[object, str, str]:
    try:
        cli.main(list(args))
        code: object = 0
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_user_quotas_are_set_changed_listed_and_lifted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'ancho.db'}"
    assert _cli(capsys, "user", "add", "ann", "--store", store, "--max-cpus", "4")[0] == 0
    assert _cli(capsys, "user", "add", "bob", "--store", store)[0] == 0
    assert quotas(open_store(store)) == {"ann": 4.0}
    code, out, _ = _cli(capsys, "user", "set", "bob", "--max-cpus", "2.5", "--store", store)
    assert (code, out) == (0, "user bob: max_cpus 2.5\n")
    assert _cli(capsys, "user", "set", "ann", "--max-cpus", "none", "--store", store)[0] == 0
    code, out, _ = _cli(capsys, "user", "list", "--store", store)
    listed = {u["user"]: u["max_cpus"] for u in map(json.loads, out.splitlines())}
    assert (code, listed) == (0, {"ann": None, "bob": 2.5})


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("user", "set", "ann", "--max-cpus", "-1"), "--max-cpus"),
        (("user", "set", "ann", "--max-cpus", "lots"), "--max-cpus"),
        (("user", "add", "cid", "--max-cpus", "0"), "--max-cpus"),
        (("user", "set", "zed", "--max-cpus", "2"), "no user 'zed'"),
    ],
)
def test_a_bad_quota_exits_2_naming_the_flag_or_user_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    store = f"sqlite:///{tmp_path / 'ancho.db'}"
    assert _cli(capsys, "user", "add", "ann", "--store", store, "--max-cpus", "4")[0] == 0
    code, _, err = _cli(capsys, *args, "--store", store)
    assert code == 2 and says in err and "Traceback" not in err
    assert quotas(open_store(store)) == {"ann": 4.0}

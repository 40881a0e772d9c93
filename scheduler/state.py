"""The scheduler's pure state machine: runs and their batches, events in, commands out.

No I/O happens here, so every decision (which offer to take, how big a batch is, what
happens when an executor dies) is testable without a network. Memory is O(batches in
flight + executors): the unscheduled part of a run is one integer (``next_index``) and
retries are a short queue of ranges.

Resource shape: each executor holds the run's ``cpus``/``mem_mb`` in total. Mesos
accounts a small slice of it to each batch task (``TASK_CPUS``/``TASK_MEM_MB``) and the
rest to the executor, so a Docker container's limits (executor + tasks, as Mesos sets
them) equal the spec's. Each executor holds up to ``PREFETCH`` batches so it never
waits for an offer between two batches.

Why a run is not running goes to its log: a run without executors whose executor is
bigger than every agent's latest offer says so once, and again when the figures
change; an executor that could not start says why (e.g. the containerizer's reason).
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import deque
from dataclasses import dataclass, field

from ancho.partials import Z95, BlockPartial, RunPartials, live_statistics

from .events import (
    AgentLost,
    CheckStored,
    Command,
    CommandFailed,
    CredentialAsked,
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
    Quotas,
    Range,
    RefuseCredential,
    Revive,
    RevokeCredential,
    RunInfo,
    SaveBatch,
    SendCredential,
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
from .outbox import Outbox
from .reconciliation import Reconciliation
from .shares import Shares, fair_level

TASK_CPUS = 0.01
TASK_MEM_MB = 1.0
PREFETCH = 2
SERIES_POINTS = 400
_EPS = 1e-9

#: Terminal states an executor (or its agent) reports, with the executor's report.
ENDED_ON_THE_AGENT = frozenset({"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR"})

TERMINAL_TASK_STATES = frozenset(
    {
        "TASK_FINISHED",
        "TASK_FAILED",
        "TASK_KILLED",
        "TASK_LOST",
        "TASK_ERROR",
        "TASK_DROPPED",
        "TASK_GONE",
        "TASK_GONE_BY_OPERATOR",
        "TASK_UNKNOWN",
    }
)
ACTIVE_RUN_STATES = frozenset({"QUEUED", "STAGING", "RUNNING"})
#: Task ends that say nothing about the model or its executor (the offer was invalid,
#: the agent was removed or stayed away, the master forgot the task): the rest of the
#: batch runs again at the same attempt, and no executor is blamed for not starting.
INFRASTRUCTURE_STATES = frozenset(
    {"TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_UNKNOWN", "TASK_UNREACHABLE"}
)
INFRASTRUCTURE_REASONS = frozenset(
    {
        "REASON_INVALID_OFFERS",
        "REASON_SLAVE_REMOVED",
        "REASON_SLAVE_REMOVED_BY_OPERATOR",
        "REASON_SLAVE_UNKNOWN",
        "REASON_RECONCILIATION",
        "REASON_MASTER_DISCONNECTED",
        "REASON_FRAMEWORK_REMOVED",
    }
)

# Allowed run state transitions; anything else is a bug and raises with the history.
_TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    {
        ("QUEUED", "STAGING"),
        ("STAGING", "RUNNING"),
        ("QUEUED", "SUMMARIZING"),
        ("STAGING", "SUMMARIZING"),
        ("RUNNING", "SUMMARIZING"),
        ("SUMMARIZING", "FINISHED"),
        ("SUMMARIZING", "FAILED"),
    }
    | {(s, "KILLED") for s in ("QUEUED", "STAGING", "RUNNING", "SUMMARIZING")}
    | {(s, "FAILED") for s in ("QUEUED", "STAGING", "RUNNING")}
)


class InvalidTransition(RuntimeError):
    """A run was asked to move between states in a way the design forbids."""


@dataclass(slots=True, frozen=True)
class SchedulerConfig:
    """Batch sizing and offer handling."""

    batch_target_s: float = 2.0
    first_batch: int = 8
    max_batch: int = 1_000_000
    fixed_batch: int | None = None
    growth: int = 16
    busy_refuse_s: float = 1.0
    idle_refuse_s: float = 30.0
    progress_every_s: float = 1.0
    #: A task TASK_UNREACHABLE for longer runs again elsewhere (the original is killed
    #: if its agent comes back).
    unreachable_grace_s: float = 30.0
    reconcile_backoff_s: float = 1.0
    reconcile_backoff_max_s: float = 60.0
    implicit_reconcile_s: float = 300.0
    #: Failed store writes are retried with backoff; a run whose writes have failed
    #: for this long ends FAILED.
    store_give_up_s: float = 300.0
    #: Times the completion check may send missing sequences back before the run fails.
    store_checks: int = 3
    #: How long the executor's own update (its report) is awaited after the master says,
    #: reconciling, that a task ended; past this the rest of the batch runs again.
    report_wait_s: float = 60.0


@dataclass(slots=True)
class Batch:
    """A batch task in flight; ``next`` is the first sequence not yet stored."""

    task_id: str
    executor_id: str
    range: Range
    next: int
    ok: int = 0
    failed: int = 0
    #: Since when the task has been TASK_UNREACHABLE (None: it is not).
    unreachable_since: float | None = None
    #: Since when the master has said that the task ended, its report not yet in.
    ended_since: float | None = None
    #: When the first TASK_RUNNING came: the executor started the batch (None: queued).
    started_at: float | None = None
    #: Killed, its executor giving its place to another user's run: what it did not
    #: store runs again at the same attempt.
    preempted: bool = False


@dataclass(slots=True)
class ExecutorState:
    """An executor of a run and the batch tasks it holds."""

    executor_id: str
    agent_id: str
    tasks: set[str] = field(default_factory=set)
    stopping: bool = False
    ever_ran: bool = False
    start_failure_logged: bool = False
    #: Holds its share of the owner's and takes batches (in ``SchedulerState.on_agent``).
    active: bool = False
    #: Gives its place back: no new batch; it stops when its last batch ends.
    draining: bool = False


@dataclass(slots=True)
class RunTrack:
    """Everything the scheduler tracks of one run."""

    info: RunInfo
    state: str
    started: float
    next_index: int = 0
    pending: deque[Range] = field(default_factory=deque)
    batches: dict[str, Batch] = field(default_factory=dict)
    executors: dict[str, ExecutorState] = field(default_factory=dict)
    ok_done: int = 0
    failed_done: int = 0
    rate: float | None = None
    last_size: int = 0
    task_seq: int = 0
    exec_seq: int = 0
    start_failures: int = 0
    reported: tuple[int, int, int] = (0, 0, 0)
    reported_at: float = 0.0
    #: The largest offer a "waiting: no offer fits" line named (None: not waiting).
    waiting: tuple[float, float] | None = None
    #: The blocks' partial summaries, merged in index order as they come in.
    partials: RunPartials = field(default_factory=lambda: RunPartials(1, 1))
    #: Where the targets were met (the run then stops): sequences 0..stopped-1 count.
    stopped: int | None = None
    live_reported: int = -1
    #: Per output, the prefix's [sequences, mean, ci95 lo, ci95 hi] at each live update:
    #: the web page's convergence chart (at most SERIES_POINTS, thinned evenly).
    series: dict[str, list[list[float | None]]] = field(default_factory=dict)
    #: The completion check: "" (not asked), "asking", "passed"; and how often it failed.
    store_check: str = ""
    store_check_failures: int = 0
    store_check_due: float = 0.0
    #: Resumed after a scheduler restart (its start time is already stored).
    resumed: bool = False

    def has_work(self) -> bool:
        """Whether sequences wait to be launched."""
        return self.state in ACTIVE_RUN_STATES and (
            bool(self.pending) or self.next_index < self.info.sequences
        )

    def counts(self) -> tuple[int, int, int]:
        """(ok, failed, running) including the progress of batches in flight."""
        ok = self.ok_done + sum(b.ok for b in self.batches.values())
        failed = self.failed_done + sum(b.failed for b in self.batches.values())
        running = sum(b.range.stop - b.next for b in self.batches.values())
        return ok, failed, running


class SchedulerState:
    """Runs and batches; ``handle(event)`` returns the commands to carry out."""

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        self.config = config or SchedulerConfig()
        self.runs: dict[str, RunTrack] = {}
        self.task_run: dict[str, str] = {}
        self.executor_run: dict[str, str] = {}
        self.suppressed = False
        self.history: deque[tuple[float, str, str, str, str]] = deque(maxlen=10_000)
        #: (cpus, mem_mb) of each agent's latest offer: what "largest offer" means.
        self.offered: dict[str, tuple[float, float]] = {}
        #: Executors given up while their agent was away (executor id -> agent id):
        #: stopped on the first sign that the agent is back (an update or an answer
        #: from it, an offer), since their own tasks may never report again.
        self.given_up: dict[str, str] = {}
        cfg = self.config
        self.reconciliation = Reconciliation(
            cfg.reconcile_backoff_s, cfg.reconcile_backoff_max_s, cfg.implicit_reconcile_s
        )
        self.outbox = Outbox(give_up_s=cfg.store_give_up_s)
        self.shares = Shares()
        #: Active executors by agent (executor id -> its run): what an offer from the
        #: agent can give more batches to, without looking at every run.
        self.on_agent: dict[str, dict[str, RunTrack]] = {}
        #: Each owner's runs in the order offers go to them: priority, then age.
        self.owner_runs: dict[str, list[RunTrack]] = {}
        #: The max-min fair dominant share at the last rebalance (inf: no one waits).
        self.fair = math.inf
        self.smallest_wanted = math.inf
        #: The most (cpus, mem) one offer has held: a bigger executor fits nowhere.
        self.largest_seen = (0.0, 0.0)

    # --- entry point ----------------------------------------------------------
    def handle(self, event: Event) -> list[Command]:
        """Apply one event; return what to do."""
        out: list[Command] = []
        self._handle(event, out)
        return [self.outbox.outgoing(c) for c in out]

    def _handle(self, event: Event, out: list[Command]) -> None:
        match event:
            case Submit():
                self._submit(event, out)
            case Offers():
                self._offers(event, out)
            case TaskStatus():
                self._status(event, out)
            case ExecutorLost():
                self._executor_lost(event.executor_id, event.status, event.now, out)
            case AgentLost():
                self._agent_lost(event.agent_id, event.now, out)
            case KillRun():
                if event.run_id in self.runs:
                    run = self.runs[event.run_id]
                    self._end(run, "KILLED", "killed on request", event.now, out)
            case Subscribed():
                self._subscribed(event, out)
            case Tick():
                self._tick(event.now, out)
            case SummaryDone():
                self._summary_done(event, out)
            case CredentialAsked():
                self._credential_asked(event, out)
            case FrameworkRemoved():
                self._framework_removed(event, out)
            case CommandFailed():
                self._command_failed(event, out)
            case StoreChecked():
                self._store_checked(event, out)
            case Quotas():
                self._quotas(event)

    # --- runs -------------------------------------------------------------------
    def _transition(self, run: RunTrack, to: str, now: float, why: str, out: list[Command],
                    **fields: object) -> None:  # fmt: skip
        """Move the run to ``to`` and persist it, with ``fields``: the one place the
        stored state of a run comes from."""
        if (run.state, to) not in _TRANSITIONS:
            recent = [h for h in self.history if h[1] == run.info.run_id][-10:]
            raise InvalidTransition(
                f"run {run.info.run_id}: {run.state} -> {to} ({why}); history: {recent}"
            )
        self.history.append((now, run.info.run_id, run.state, to, why))
        run.state = to
        out.append(UpdateRun(run.info.run_id, {"state": to, **fields}))

    def _submit(self, ev: Submit, out: list[Command]) -> None:
        run = RunTrack(
            info=ev.run,
            state="QUEUED",
            started=ev.now,
            next_index=ev.next_index,
            pending=deque(ev.pending),
            ok_done=ev.ok,
            failed_done=ev.failed,
            partials=RunPartials(ev.run.sequences, ev.run.block_size),
            resumed=bool(ev.in_flight or ev.pending or ev.next_index),
        )
        self.runs[ev.run.run_id] = run
        runs = self.owner_runs.setdefault(ev.run.owner, [])
        bisect.insort(runs, run, key=_run_order)
        for task_id, executor_id, agent_id, rng in ev.in_flight:
            run.batches[task_id] = Batch(task_id, executor_id, rng, rng.start)
            ex = run.executors.get(executor_id)
            if ex is None:
                ex = ExecutorState(executor_id, agent_id)
                self._add_executor(run, ex)
            elif not ex.agent_id:
                ex.agent_id = agent_id
                self._index(run, ex)
            ex.tasks.add(task_id)
            self.task_run[task_id] = run.info.run_id
            run.task_seq = max(run.task_seq, _suffix(task_id) + 1)
            run.exec_seq = max(run.exec_seq, _suffix(executor_id) + 1)
        if ev.in_flight:
            self._transition(run, "STAGING", ev.now, "resumed with batches in flight", out)
            self._reconcile({t: a for t, _, a, _ in ev.in_flight}, ev.now, out)
        out.append(Log(run.info.run_id, "info", f"run queued: {ev.run.sequences} sequences"))
        self._take_partials(run, ev.partials, ev.now, out)
        self._check_complete(run, ev.now, out)
        self._rebalance(out)  # a new owner may be waiting: make room now, not at the tick
        if run.has_work() and self.suppressed:
            self.suppressed = False
            out.append(Revive())

    def _end(self, run: RunTrack, to: str, reason: str, now: float, out: list[Command]) -> None:
        """Kill, or fail without a summary: stop everything of the run."""
        ok, failed, _ = run.counts()
        level = "warning" if to == "KILLED" else "error"
        out.append(Log(run.info.run_id, level, f"run {to.lower()}: {reason}"))
        self._transition(run, to, now, reason, out, reason=reason, ok=ok, failed=failed,
                         running=0, finished_at=now)  # fmt: skip
        for batch in run.batches.values():
            ex = run.executors.get(batch.executor_id)
            out.append(KillTask(batch.task_id, ex.agent_id if ex else ""))
            out.append(ForgetBatch(run.info.run_id, batch.task_id))
            self.task_run.pop(batch.task_id, None)
            self.reconciliation.forget(batch.task_id)
        for rng in run.pending:
            out.append(ForgetBatch(run.info.run_id, _retry_key(rng)))
        run.batches.clear()
        run.pending.clear()
        self._stop_executors(run, out)
        out.append(RevokeCredential(run.info.run_id))
        self._forget_run(run)
        self._maybe_suppress(out)

    def _forget_run(self, run: RunTrack) -> None:
        del self.runs[run.info.run_id]
        runs = self.owner_runs[run.info.owner]
        runs.remove(run)
        if not runs:
            del self.owner_runs[run.info.owner]

    def _stop_executors(self, run: RunTrack, out: list[Command]) -> None:
        for ex in run.executors.values():
            self._stop_executor(run, ex, out)

    def _stop_executor(self, run: RunTrack, ex: ExecutorState, out: list[Command]) -> None:
        if not ex.stopping:
            ex.stopping = True
            self._retire(run, ex)
            out.append(StopExecutor(ex.executor_id, ex.agent_id))

    # --- executors: the one place they come and go -------------------------------
    def _add_executor(self, run: RunTrack, ex: ExecutorState) -> None:
        """A new (or resumed) executor of the run: it holds its share of the owner's."""
        run.executors[ex.executor_id] = ex
        self.executor_run[ex.executor_id] = run.info.run_id
        ex.active = True
        self.shares.take(run.info.owner, run.info.cpus, run.info.mem_mb)
        self._index(run, ex)

    def _index(self, run: RunTrack, ex: ExecutorState) -> None:
        """File an active executor under its agent (once the agent is known)."""
        if ex.active and ex.agent_id:
            self.on_agent.setdefault(ex.agent_id, {})[ex.executor_id] = run

    def _retire(self, run: RunTrack, ex: ExecutorState) -> None:
        """The executor takes no more batches: its share and its index entry go."""
        if not ex.active:
            return
        ex.active = False
        self.shares.give_back(run.info.owner, run.info.cpus, run.info.mem_mb)
        here = self.on_agent.get(ex.agent_id)
        if here is not None:
            here.pop(ex.executor_id, None)
            if not here:
                del self.on_agent[ex.agent_id]

    def _remove_executor(self, run: RunTrack, ex: ExecutorState) -> None:
        """The executor is gone (or never was)."""
        self._retire(run, ex)
        run.executors.pop(ex.executor_id, None)
        self.executor_run.pop(ex.executor_id, None)

    def _check_complete(self, run: RunTrack, now: float, out: list[Command]) -> None:
        if run.state not in ACTIVE_RUN_STATES or run.has_work() or run.batches:
            return
        if run.stopped is None and run.store_check != "passed":
            # Counts come from status updates: the store must hold every result itself.
            if run.store_check != "asking" and now >= run.store_check_due:
                run.store_check = "asking"
                out.append(CheckStored(run.info.run_id, run.info.sequences))
            return
        ok, failed, _ = run.counts()
        why = "all sequences stored" if run.stopped is None else "targets met"
        self._stop_executors(run, out)
        fields: dict[str, object] = {"running": 0}
        if run.stopped is None:
            fields.update(ok=ok, failed=failed)
            out.append(Log(run.info.run_id, "info", f"all sequences in ({ok} ok, {failed} failed)"))
        self._transition(run, "SUMMARIZING", now, why, out, **fields)
        out.append(StartSummary(run.info.run_id, run.partials, run.stopped,
                                bool(run.info.targets)))  # fmt: skip
        self._maybe_suppress(out)

    def _summary_done(self, ev: SummaryDone, out: list[Command]) -> None:
        run = self.runs.get(ev.run_id)
        if run is None or run.state != "SUMMARIZING":
            return
        if ev.error is not None:
            to, reason = "FAILED", f"summary failed: {ev.error}"
        elif ev.failed:
            to, reason = "FAILED", f"{ev.failed} of {run.info.sequences} sequences failed"
        else:
            to, reason = "FINISHED", ""
        fields: dict[str, object] = {"ok": ev.ok, "failed": ev.failed, "running": 0,
                                     "finished_at": ev.now}  # fmt: skip
        if reason:
            fields["reason"] = reason
        self._transition(run, to, ev.now, reason or "summary stored", out, **fields)
        out.append(
            Log(run.info.run_id, "info", f"run {to.lower()}" + (f": {reason}" if reason else ""))
        )
        out.append(RevokeCredential(run.info.run_id))
        self._forget_run(run)

    def _credential_asked(self, ev: CredentialAsked, out: list[Command]) -> None:
        """Only an executor launched for the run, while the run lasts, gets its credential."""
        run = self.runs.get(ev.run_id)
        ex = run.executors.get(ev.executor_id) if run is not None else None
        if run is None:
            why = f"run {ev.run_id} is not being scheduled"
        elif ex is None or (ex.agent_id and ev.agent_id != ex.agent_id):
            why = f"executor {ev.executor_id} on agent {ev.agent_id} was not launched for it"
        else:
            out.append(SendCredential(ev.run_id, ev.executor_id, ev.agent_id))
            return
        out.append(RefuseCredential(ev.run_id, ev.executor_id, ev.agent_id, why))
        if run is not None:
            out.append(Log(ev.run_id, "warning", f"store credential refused: {why}"))

    # --- offers -----------------------------------------------------------------
    def _offers(self, ev: Offers, out: list[Command]) -> None:
        latest: dict[str, tuple[float, float]] = {}
        for offer in ev.offers:  # an agent's resources may come in several offers
            cpus, mem = latest.get(offer.agent_id, (0.0, 0.0))
            latest[offer.agent_id] = (max(cpus, offer.cpus), max(mem, offer.mem_mb))
        self.offered.update(latest)
        self.largest_seen = (
            max([self.largest_seen[0], *(c for c, _ in latest.values())]),
            max([self.largest_seen[1], *(m for _, m in latest.values())]),
        )
        for agent_id in latest:
            self._stop_given_up(agent_id, out)
        wanting: list[float] = []
        waiting: list[RunTrack] = []
        for run in self.runs.values():
            if run.has_work():
                wanting.append(run.info.cpus)
                if not run.executors:
                    waiting.append(run)
        busy = bool(wanting)
        #: An offer with fewer cpus than the smallest executor wanted starts none.
        self.smallest_wanted = min(wanting, default=math.inf)
        left: dict[str, tuple[float, float]] = {}
        for offer in ev.offers:
            tasks, cpus, mem = self._place(offer, ev.now, out)
            c, m = left.get(offer.agent_id, (0.0, 0.0))
            left[offer.agent_id] = (c + cpus, m + mem)
            if tasks:
                out.append(Launch(offer.offer_id, offer.agent_id, tuple(tasks)))
            else:
                refuse = self.config.busy_refuse_s if busy else self.config.idle_refuse_s
                out.append(Decline((offer.offer_id,), refuse))
        for agent_id, (cpus, mem) in left.items():
            self.shares.free(agent_id, cpus, mem)
        if ev.offers and waiting:
            self._explain_waiting([r for r in waiting if not r.executors], out)
        self._maybe_suppress(out)

    def _explain_waiting(self, waiting: list[RunTrack], out: list[Command]) -> None:
        """Log why runs without an executor get none: no agent offers one that big.

        Said once, and again when the largest offer changes noticeably (batch tasks
        coming and going move offers by a slice, which is no news). ``waiting`` are
        the runs with work and no executor after this round of offers.
        """
        if not self.offered or not waiting:
            return
        largest = (
            max(c for c, _ in self.offered.values()),
            max(m for _, m in self.offered.values()),
        )
        fits: dict[tuple[float, float], bool] = {}  # runs mostly ask alike: scan once
        for run in waiting:
            info = run.info
            need = (info.cpus, info.mem_mb)
            if need not in fits:
                fits[need] = any(c + _EPS >= info.cpus and m + _EPS >= info.mem_mb
                                 for c, m in self.offered.values())  # fmt: skip
            if fits[need]:
                continue  # it fits; another run took the room this time
            if run.waiting is not None and not _differs(run.waiting, largest):
                continue
            run.waiting = largest
            out.append(
                Log(
                    info.run_id,
                    "warning",
                    f"waiting: no offer fits {info.cpus:g} cpus / {info.mem_mb:g} MB per"
                    f" executor; offers hold at most {round(largest[0], 2):g} cpus /"
                    f" {largest[1]:.0f} MB",
                )
            )

    def _place(self, offer: Offer, now: float,
               out: list[Command]) -> tuple[list[TaskLaunch], float, float]:  # fmt: skip
        """What to launch on the offer, and the cpus and memory left of it.

        First new executors for owners below the fair level (lowest dominant share
        first), then more batches for the executors already on the agent (a task slice
        each), then new executors for anyone, so that an idle cluster is used whole.
        """
        tasks: list[TaskLaunch] = []
        cpus, mem = self._new_executors(offer.agent_id, offer.cpus, offer.mem_mb, self.fair,
                                        now, out, tasks)  # fmt: skip
        for executor_id, run in list(self.on_agent.get(offer.agent_id, {}).items()):
            ex = run.executors[executor_id]
            while (run.has_work() and len(ex.tasks) < PREFETCH
                   and cpus + _EPS >= TASK_CPUS and mem + _EPS >= TASK_MEM_MB):  # fmt: skip
                tasks.append(self._launch(run, ex, False, now, out))
                cpus -= TASK_CPUS
                mem -= TASK_MEM_MB
        if self.fair != math.inf:
            cpus, mem = self._new_executors(offer.agent_id, cpus, mem, math.inf, now, out, tasks)
        return tasks, cpus, mem

    def _new_executors(self, agent_id: str, cpus: float, mem: float, level: float,
                       now: float, out: list[Command],
                       tasks: list[TaskLaunch]) -> tuple[float, float]:  # fmt: skip
        """Start executors in (cpus, mem) of the agent, one at a time to the owner with
        the smallest dominant share below ``level``; return what is left."""
        if cpus + _EPS < self.smallest_wanted:
            return cpus, mem
        shares = self.shares
        heap = [(shares.dominant(owner), owner) for owner in self.owner_runs]
        heapq.heapify(heap)
        while heap:
            share, owner = heapq.heappop(heap)
            if share + _EPS >= level:
                break
            run = self._wants_executor(owner, cpus, mem)
            if run is None:
                continue
            info = run.info
            ex = ExecutorState(f"{info.run_id}.e{run.exec_seq}", agent_id)
            run.exec_seq += 1
            run.waiting = None
            self._add_executor(run, ex)
            cpus -= info.cpus
            mem -= info.mem_mb
            tasks.append(self._launch(run, ex, True, now, out))
            while run.has_work() and len(ex.tasks) < PREFETCH:
                tasks.append(self._launch(run, ex, False, now, out))
            heapq.heappush(heap, (shares.dominant(owner), owner))
        return cpus, mem

    def _wants_executor(self, owner: str, cpus: float, mem: float) -> RunTrack | None:
        """The owner's first run (by priority, then age) that has work, may have another
        executor, and whose executor fits in (cpus, mem) and in the owner's quota."""
        for run in self.owner_runs[owner]:
            info = run.info
            if (
                run.has_work()
                and len(run.executors) < _executor_limit(info)
                and cpus + _EPS >= info.cpus
                and mem + _EPS >= info.mem_mb
                and self.shares.within_quota(owner, info.cpus)
            ):
                return run
        return None

    def _launch(
        self, run: RunTrack, ex: ExecutorState, new: bool, now: float, out: list[Command]
    ) -> TaskLaunch:
        info = run.info
        if run.pending:
            rng = run.pending.popleft()
            out.append(ForgetBatch(info.run_id, _retry_key(rng)))
        else:
            size = self._batch_size(run)
            rng = Range(run.next_index, run.next_index + size, 1)
            run.next_index += size
            out.append(UpdateRun(info.run_id, {"next_index": run.next_index}))
        task_id = f"{info.run_id}.t{run.task_seq}"
        run.task_seq += 1
        run.batches[task_id] = Batch(task_id, ex.executor_id, rng, rng.start)
        ex.tasks.add(task_id)
        self.task_run[task_id] = info.run_id
        out.append(SaveBatch(info.run_id, task_id, rng, ex.executor_id, ex.agent_id))
        if run.state == "QUEUED":
            self._transition(run, "STAGING", now, "first batch launched", out)
        return TaskLaunch(task_id, info.run_id, ex.executor_id, rng, new, info)

    def _batch_size(self, run: RunTrack) -> int:
        cfg = self.config
        remaining = run.info.sequences - run.next_index
        if cfg.fixed_batch is not None:
            return self._whole_blocks(run, cfg.fixed_batch, remaining)
        if run.rate is None:
            size = cfg.first_batch
        else:
            size = int(run.rate * cfg.batch_target_s)
            size = min(size, max(run.last_size, 1) * cfg.growth)
        # Near the end, smaller batches keep every executor busy until the last one ends.
        workers = max(len(run.executors), 1) * PREFETCH
        size = min(size, math.ceil(remaining / workers), cfg.max_batch)
        return self._whole_blocks(run, size, remaining)

    @staticmethod
    def _whole_blocks(run: RunTrack, size: int, remaining: int) -> int:
        """``size`` rounded up to whole blocks (the last block of a run may be short)."""
        block = run.info.block_size
        size = max(1, min(math.ceil(max(size, 1) / block) * block, remaining))
        run.last_size = size
        return size

    def _maybe_suppress(self, out: list[Command]) -> None:
        busy = any(r.has_work() for r in self.runs.values())
        if not busy and not self.suppressed:
            self.suppressed = True
            out.append(Suppress())
        elif busy and self.suppressed:
            self.suppressed = False
            out.append(Revive())

    # --- status updates --------------------------------------------------------------
    def _status(self, ev: TaskStatus, out: list[Command]) -> None:
        self.reconciliation.answered(ev.task_id, ev.state)
        if ev.agent_id and ev.state != "TASK_UNREACHABLE":
            self._stop_given_up(ev.agent_id, out)
        run_id = self.task_run.get(ev.task_id)
        run = self.runs.get(run_id) if run_id else None
        if run is None or ev.task_id not in run.batches:
            if ev.state not in TERMINAL_TASK_STATES and ev.state != "TASK_UNREACHABLE":
                out.append(KillTask(ev.task_id, ev.agent_id))  # a task we no longer want
            if (ev.executor_id and ev.agent_id and ev.state != "TASK_UNREACHABLE"
                    and ev.executor_id not in self.executor_run):  # fmt: skip
                # An executor given up for (its agent came back late): it goes too.
                stop = StopExecutor(ev.executor_id, ev.agent_id)
                if stop not in out:
                    out.append(stop)
            return
        batch = run.batches[ev.task_id]
        ex = run.executors.get(batch.executor_id)
        if ex is not None and ev.agent_id and not ex.agent_id:
            ex.agent_id = ev.agent_id
            self._index(run, ex)
        if ev.state == "TASK_UNREACHABLE":
            # Its agent is partitioned away: wait for it (reconciling) up to the grace.
            if batch.unreachable_since is None:
                batch.unreachable_since = ev.now
                agent = ev.agent_id or (ex.agent_id if ex else "")
                self._reconcile({batch.task_id: agent}, ev.now, out)
            return
        batch.unreachable_since = None
        if ev.state in ENDED_ON_THE_AGENT and ev.reason == "REASON_RECONCILIATION":
            # The master's word, without the executor's report (how far it got): that
            # comes in the executor's own update, which its agent sends until acknowledged.
            if batch.ended_since is None:
                batch.ended_since = ev.now
            return
        report = ev.report
        if report is not None:
            batch.next = max(batch.next, min(report.next, batch.range.stop))
            batch.ok, batch.failed = report.ok, report.failed
        self._take_partials(run, ev.partials, ev.now, out)
        if run.info.run_id not in self.runs:
            return
        if ev.state == "TASK_RUNNING":
            if batch.started_at is None:
                batch.started_at = ev.now
            run.start_failures = 0
            if ex is not None:
                ex.ever_ran = True
            if run.state == "STAGING":
                started = {} if run.resumed else {"started_at": ev.now}
                self._transition(run, "RUNNING", ev.now, "a batch is running", out, **started)
            return
        if ev.state not in TERMINAL_TASK_STATES:
            return
        self._batch_ended(run, batch, ex, ev, out)
        if run.info.run_id in self.runs:
            if _infrastructure(ev):
                self._drop_if_never_launched(run, ex)
            if ex is not None and ex.active and not ex.tasks and not run.has_work():
                # Nothing left to launch: its place goes to other runs now, not when the
                # run's last batch ends (a failed batch's retry starts a new executor).
                self._stop_executor(run, ex, out)
            self._check_complete(run, ev.now, out)

    def _stop_given_up(self, agent_id: str, out: list[Command]) -> None:
        """The agent is back: stop the executors given up there."""
        for executor_id, on in list(self.given_up.items()):
            if on == agent_id:
                del self.given_up[executor_id]
                out.append(StopExecutor(executor_id, agent_id))

    def _drop_if_never_launched(self, run: RunTrack, ex: ExecutorState | None) -> None:
        """An executor whose every task was refused before it started (an invalid or
        rescinded offer) does not exist: forget it, so it holds no place of the run's."""
        if ex is None or ex.tasks or ex.ever_ran:
            return
        self._remove_executor(run, ex)

    def _reconcile(self, tasks: dict[str, str], now: float, out: list[Command]) -> None:
        ask = self.reconciliation.ask(tasks, now)
        if ask is not None:
            out.append(ask)

    # --- partial summaries and targets -----------------------------------------
    def _take_partials(self, run: RunTrack, partials: tuple[tuple[int, BlockPartial], ...],
                       now: float, out: list[Command]) -> None:  # fmt: skip
        """Merge the blocks that came in; stop the run where its targets are met."""
        if run.stopped is not None or run.state not in ACTIVE_RUN_STATES:
            return
        for block, partial in partials:
            run.partials.put(block, partial)
        for end in run.partials.advance():
            if run.info.targets and _targets_met(run.info.targets, run.partials.prefix):
                self._stop_at(run, end, now, out)
                return

    def _stop_at(self, run: RunTrack, k: int, now: float, out: list[Command]) -> None:
        """The targets hold over sequences 0..k-1: cancel the rest of the run."""
        info = run.info
        run.stopped = k
        out.append(Log(info.run_id, "info", f"targets met at sequence {k}: stopping"))
        for rng in run.pending:
            out.append(ForgetBatch(info.run_id, _retry_key(rng)))
        run.pending.clear()
        run.next_index = info.sequences
        for batch in run.batches.values():
            ex = run.executors.get(batch.executor_id)
            out.append(KillTask(batch.task_id, ex.agent_id if ex else ""))
        self._check_complete(run, now, out)
        self._maybe_suppress(out)

    def _live(self, run: RunTrack, out: list[Command]) -> None:
        """The live statistics, when blocks came in since they were last sent."""
        live = run.partials.live()
        seen = live.ok + live.failed
        if seen == run.live_reported:
            return
        run.live_reported = seen
        stats = {name: live_statistics(p) for name, p in live.outputs.items()}
        add_series_point(run.series, run.partials)
        series = {name: list(points) for name, points in run.series.items()}
        out.append(PutLive(run.info.run_id, {"live": stats, "series": series}))

    def _batch_ended(
        self,
        run: RunTrack,
        batch: Batch,
        ex: ExecutorState | None,
        ev: TaskStatus,
        out: list[Command],
    ) -> None:
        info = run.info
        report = ev.report
        del run.batches[batch.task_id]
        self.task_run.pop(batch.task_id, None)
        self.reconciliation.forget(batch.task_id)
        if ex is not None:
            ex.tasks.discard(batch.task_id)
            if ex.draining and not ex.tasks:
                self._stop_executor(run, ex, out)  # at its batch boundary: nothing is lost
        out.append(ForgetBatch(info.run_id, batch.task_id))
        run.ok_done += batch.ok
        run.failed_done += batch.failed
        if ev.state == "TASK_FINISHED" and batch.next >= batch.range.stop:
            elapsed = report.elapsed if report is not None else None
            if elapsed is not None and elapsed > 0.02:
                rate = len(batch.range) / float(elapsed)
                run.rate = rate if run.rate is None else 0.5 * run.rate + 0.5 * rate
            elif run.rate is None or run.last_size <= len(batch.range):
                # Too quick to time: grow geometrically until batches are measurable.
                run.rate = len(batch.range) * self.config.growth / self.config.batch_target_s
            return
        if run.stopped is not None:
            return  # killed because the targets were met: the rest is not wanted
        if report is not None and report.fatal:
            self._end(run, "FAILED", report.error or "the model could not run", ev.now, out)
            return
        why = " ".join(p for p in (ev.state, ev.reason, ev.message) if p)
        if batch.preempted and ev.state == "TASK_KILLED":
            # Killed for another user's run: not the model's doing.
            rest = Range(batch.next, batch.range.stop, batch.range.attempt)
            if len(rest) > 0:
                run.pending.appendleft(rest)
                out.append(SaveBatch(info.run_id, _retry_key(rest), rest))
                self._maybe_suppress(out)
            return
        if _infrastructure(ev):
            # Not the model's doing: the rest runs again at the same attempt, first.
            rest = Range(batch.next, batch.range.stop, batch.range.attempt)
            if len(rest) > 0:
                run.pending.appendleft(rest)
                out.append(SaveBatch(info.run_id, _retry_key(rest), rest))
                again = f"batch {rest.start}..{rest.stop - 1} runs again: {why}"
                out.append(Log(info.run_id, "warning", again))
                self._maybe_suppress(out)
            return
        if ex is not None and not ex.ever_ran:
            if not ex.start_failure_logged:  # its other batches fail the same way: once
                ex.start_failure_logged = True
                why_not = f"executor {ex.executor_id} could not start: {why}"
                out.append(Log(info.run_id, "error", why_not))
            run.start_failures += 1
            if run.start_failures >= info.max_attempts * PREFETCH:
                self._end(run, "FAILED", f"executors could not start: {why}", ev.now, out)
                return
        rest = Range(batch.next, batch.range.stop, batch.range.attempt + 1)
        if len(rest) <= 0:
            return
        if batch.range.attempt < info.max_attempts:
            run.pending.append(rest)
            out.append(SaveBatch(info.run_id, _retry_key(rest), rest))
            out.append(
                Log(
                    info.run_id,
                    "warning",
                    f"batch {rest.start}..{rest.stop - 1} will be retried "
                    f"(attempt {rest.attempt} of {info.max_attempts}): {why}",
                )
            )
            self._maybe_suppress(out)
        else:
            failed = Range(rest.start, rest.stop, batch.range.attempt)
            run.failed_done += len(failed)
            out.append(
                WriteFailed(info.run_id, failed, f"{why} after {info.max_attempts} attempts")
            )
            out.append(
                Log(info.run_id, "error", f"batch {failed.start}..{failed.stop - 1} failed: {why}")
            )

    def _executor_lost(
        self, executor_id: str, status: int | None, now: float, out: list[Command]
    ) -> None:
        run_id = self.executor_run.pop(executor_id, None)
        run = self.runs.get(run_id) if run_id else None
        if run is None:
            return
        ex = run.executors.get(executor_id)
        if ex is None:
            return
        self._remove_executor(run, ex)
        if not ex.stopping:
            out.append(Log(run.info.run_id, "warning", f"executor {executor_id} exited ({status})"))
        for task_id in list(ex.tasks):
            batch = run.batches.get(task_id)
            if batch is None:
                continue
            ev = TaskStatus(
                task_id,
                "TASK_LOST",
                now,
                "REASON_EXECUTOR_TERMINATED",
                f"executor exited with status {status}",
                executor_id=executor_id,
                agent_id=ex.agent_id,
            )
            self._batch_ended(run, batch, ex, ev, out)
            if run.info.run_id not in self.runs:
                return
        self._check_complete(run, now, out)

    # --- time and subscription -----------------------------------------------------
    def _subscribed(self, ev: Subscribed, out: list[Command]) -> None:
        in_flight = {}
        for run in self.runs.values():
            for task_id, batch in run.batches.items():
                ex = run.executors.get(batch.executor_id)
                in_flight[task_id] = ex.agent_id if ex else ""
        # A new master may not know what the old one did: ask about every task again.
        self.reconciliation.waiting.clear()
        self._reconcile(in_flight, ev.now, out)
        # A (re-)subscription clears suppression at the master: say again what we want.
        self.suppressed = False
        if any(r.has_work() for r in self.runs.values()):
            out.append(Revive())
        else:
            self._maybe_suppress(out)

    def _tick(self, now: float, out: list[Command]) -> None:
        out.extend(self.outbox.due(now))
        for run_id, error in self.outbox.stuck(now).items():
            self.outbox.drop_run(run_id)
            if run_id in self.runs and self.runs[run_id].state in ACTIVE_RUN_STATES:
                why = f"the store refused its writes for {self.config.store_give_up_s:g} s: {error}"
                self._end(self.runs[run_id], "FAILED", why, now, out)
        ask = self.reconciliation.tick(now)
        if ask is not None:
            out.append(ask)
        self._maybe_suppress(out)  # again, in case a REVIVE or SUPPRESS failed
        self._rebalance(out)
        for run in list(self.runs.values()):
            self._waited_too_long(run, now, out)
            if run.info.run_id not in self.runs:
                continue
            self._check_complete(run, now, out)  # a completion check to try again
            if run.info.run_id not in self.runs:
                continue
            timeout = run.info.timeout_s
            if (
                timeout is not None
                and run.state in ACTIVE_RUN_STATES
                and now - run.started > timeout
            ):
                self._end(run, "FAILED", f"timed out after {timeout:g} s", now, out)
                continue
            if now - run.reported_at < self.config.progress_every_s:
                continue
            counts = run.counts()
            if counts != run.reported and run.state in ACTIVE_RUN_STATES:
                run.reported = counts
                run.reported_at = now
                ok, failed, running = counts
                out.append(
                    UpdateRun(run.info.run_id, {"ok": ok, "failed": failed, "running": running})
                )
                self._live(run, out)

    # --- fair shares ------------------------------------------------------------------
    def _quotas(self, ev: Quotas) -> None:
        quotas = dict(ev.max_cpus)
        for owner in set(self.shares.users) | set(quotas):
            self.shares.set_quota(owner, quotas.get(owner))

    def _rebalance(self, out: list[Command]) -> None:
        """Set the fair level from what each owner holds and could use; then owners
        over their quota, and owners over the fair level while another waits below it,
        give executors back at their batch boundaries (``_drain``).

        An executor is taken from a giver only while the giver keeps more than the
        neediest waiting owner has: a strict gain in max-min fairness, so executors do
        not pass back and forth between equals.
        """
        shares = self.shares
        demands: dict[str, float] = {}
        waits: dict[str, float] = {}  # owner -> the share of the smallest executor it waits for
        for owner, runs in self.owner_runs.items():
            more, smallest = 0.0, math.inf
            for run in runs:
                info = run.info
                room = _executor_limit(info) - len(run.executors)
                fits = info.cpus <= self.largest_seen[0] + _EPS and (
                    info.mem_mb <= self.largest_seen[1] + _EPS)  # fmt: skip
                if room > 0 and fits and run.has_work():
                    one = shares.dominant_of(info.cpus, info.mem_mb)
                    more += room * one
                    smallest = min(smallest, one)
            held = shares.dominant(owner)
            demands[owner] = min(held + more, shares.quota_share(owner))
            if smallest != math.inf:
                waits[owner] = smallest
        self.fair = fair_level(demands) if demands else math.inf
        for owner in demands:
            self._drain_over_quota(owner, out)
        waiting = {o: min(demands[o], self.fair) - shares.dominant(o) for o in waits}
        waiting = {o: gap for o, gap in waiting.items() if gap > _EPS}
        if not waiting:
            return
        need = sum(waiting.values())
        lowest = min(shares.dominant(o) for o in waiting)
        givers = [o for o in demands if shares.dominant(o) > self.fair + _EPS]
        for owner in sorted(givers, key=shares.dominant, reverse=True):
            drained = 0
            for run, ex in self._drain_candidates(owner):
                one = shares.dominant_of(run.info.cpus, run.info.mem_mb)
                if need <= _EPS or shares.dominant(owner) - one <= lowest + _EPS:
                    break
                self._drain(run, ex, out)
                need -= one
                drained += 1
            if drained:
                out.append(Log(self.owner_runs[owner][-1].info.run_id, "info",
                               f"{drained} executor(s) of {owner or 'this user'} give their"
                               " place to another user's runs (fair share)"))  # fmt: skip

    def _drain_over_quota(self, owner: str, out: list[Command]) -> None:
        share = self.shares.user(owner)
        if share.max_cpus is None:
            return
        for run, ex in self._drain_candidates(owner):
            if share.cpus <= share.max_cpus + _EPS:
                return
            self._drain(run, ex, out)

    def _drain_candidates(self, owner: str) -> list[tuple[RunTrack, ExecutorState]]:
        """The owner's active executors, those of its last runs (lowest priority,
        youngest) first; within a run, those whose running batch started first (the
        likeliest to end soonest), idle ones before all."""
        found = []
        for rank, run in enumerate(reversed(self.owner_runs.get(owner, []))):
            for ex in run.executors.values():
                if ex.active:
                    found.append(((rank, self._running_since(run, ex)), run, ex))
        found.sort(key=lambda item: item[0])
        return [(run, ex) for _, run, ex in found]

    @staticmethod
    def _running_since(run: RunTrack, ex: ExecutorState) -> float:
        """When the executor's running batch started (-inf: it runs none)."""
        starts = [b.started_at for t in ex.tasks if (b := run.batches.get(t)) is not None
                  and b.started_at is not None]  # fmt: skip
        return min(starts, default=-math.inf)

    def _drain(self, run: RunTrack, ex: ExecutorState, out: list[Command]) -> None:
        """The executor takes no new batch and its batches are killed: a queued one at
        once, the running one after the sequence it is computing (the executor stores
        what it has computed, then ends the batch), so nothing is lost or computed
        twice. What they did not store goes back to the run at the same attempt; the
        executor stops once its last batch has ended."""
        ex.draining = True
        self._retire(run, ex)
        for task_id in sorted(ex.tasks):
            batch = run.batches.get(task_id)
            if batch is not None and not batch.preempted:
                batch.preempted = True
                out.append(KillTask(task_id, ex.agent_id))
        if not ex.tasks:
            self._stop_executor(run, ex, out)

    def _waited_too_long(self, run: RunTrack, now: float, out: list[Command]) -> None:
        """Batches whose agent has stayed away past the grace, or whose end the master
        told but whose report has not come for ``report_wait_s``, run again; if the
        agent comes back, their tasks are unknown and get killed."""
        config = self.config
        for batch in list(run.batches.values()):
            if batch.unreachable_since is not None:
                since, wait, state = (
                    batch.unreachable_since,
                    config.unreachable_grace_s,
                    "TASK_UNREACHABLE",
                )
                why = f"its agent has been unreachable for {now - since:.0f} s"
            elif batch.ended_since is not None:
                since, wait, state = batch.ended_since, config.report_wait_s, "TASK_UNKNOWN"
                why = f"ended, its executor's report not received in {now - since:.0f} s"
            else:
                continue
            if now - since <= wait:
                continue
            ex = run.executors.get(batch.executor_id)
            ev = TaskStatus(batch.task_id, state, now, message=why,
                            executor_id=batch.executor_id)  # fmt: skip
            self._batch_ended(run, batch, ex, ev, out)
            if state == "TASK_UNREACHABLE" and ex is not None and ex.agent_id:
                # Still asked about: the master's answer once the agent is back is the
                # sign that stops the executor given up (below).
                self._reconcile({batch.task_id: ex.agent_id}, now, out)
            if run.info.run_id not in self.runs:
                return
            if ex is not None and not ex.tasks:  # its place goes to a new executor
                self._remove_executor(run, ex)
                if ex.agent_id:
                    self.given_up[ex.executor_id] = ex.agent_id

    def _agent_lost(self, agent_id: str, now: float, out: list[Command]) -> None:
        """An agent is removed or unreachable. Its tasks' own updates (TASK_UNREACHABLE,
        TASK_GONE, TASK_LOST) say what happens to their batches; executors with no
        batch there are gone, and batches that got no update yet count as unreachable."""
        self.offered.pop(agent_id, None)
        self.shares.forget_agent(agent_id)
        ask: dict[str, str] = {}
        for run in list(self.runs.values()):
            for ex in list(run.executors.values()):
                if ex.agent_id != agent_id:
                    continue
                if not ex.tasks:
                    self._executor_lost(ex.executor_id, None, now, out)
                    continue
                for task_id in sorted(ex.tasks):
                    batch = run.batches.get(task_id)
                    if batch is not None and batch.unreachable_since is None:
                        batch.unreachable_since = now
                        ask[task_id] = agent_id
        self._reconcile(ask, now, out)

    def _framework_removed(self, ev: FrameworkRemoved, out: list[Command]) -> None:
        """The master removed the framework and killed its tasks: every batch in flight
        runs again (same attempt) under the new framework the edge registers."""
        self.reconciliation.waiting.clear()
        for run in self.runs.values():
            if run.state not in ACTIVE_RUN_STATES:
                continue
            redo = sorted((Range(b.next, b.range.stop, b.range.attempt)
                           for b in run.batches.values()), key=lambda r: r.start)  # fmt: skip
            for batch in run.batches.values():
                out.append(ForgetBatch(run.info.run_id, batch.task_id))
                self.task_run.pop(batch.task_id, None)
            for rng in reversed([r for r in redo if len(r) > 0]):
                run.pending.appendleft(rng)
                out.append(SaveBatch(run.info.run_id, _retry_key(rng), rng))
            run.ok_done += sum(b.ok for b in run.batches.values())
            run.failed_done += sum(b.failed for b in run.batches.values())
            run.batches.clear()
            for ex in list(run.executors.values()):
                self._remove_executor(run, ex)
            out.append(
                Log(run.info.run_id, "warning",
                    f"framework {ev.framework_id} was removed by the Mesos master: Ancho"
                    f" registered a new framework and resubmitted this run"
                    f" ({len(redo)} batches in flight run again)")
            )  # fmt: skip
        self.suppressed = True  # the new framework starts unsuppressed: Revive on subscribe

    def _command_failed(self, ev: CommandFailed, out: list[Command]) -> None:
        """A command the edge could not carry out: retry it, or undo what it meant."""
        cmd = ev.command
        match cmd:
            case Revive():
                self.suppressed = True  # the next tick revives again
            case Suppress():
                self.suppressed = False  # the next tick suppresses again
            case Launch():
                for task in reversed(cmd.tasks):  # as if the master had refused the offer
                    status = TaskStatus(task.task_id, "TASK_DROPPED", ev.now,
                                        reason="REASON_INVALID_OFFERS",
                                        message=f"not launched: {ev.error}",
                                        executor_id=task.executor_id)  # fmt: skip
                    self._status(status, out)
            case _:
                self.outbox.failed(cmd, ev.error, ev.now)  # Decline, messages: dropped

    def _store_checked(self, ev: StoreChecked, out: list[Command]) -> None:
        """The completion check's answer: summarize, run the missing sequences again, or
        give up after ``store_checks`` tries."""
        run = self.runs.get(ev.run_id)
        if run is None or run.state not in ACTIVE_RUN_STATES or run.store_check != "asking":
            return
        info = run.info
        if ev.error is None and ev.stored == info.sequences and not ev.missing:
            run.store_check = "passed"
            self._check_complete(run, ev.now, out)
            return
        run.store_check = ""
        run.store_check_failures += 1
        if ev.error is not None:
            problem = f"the store could not be counted: {ev.error}"
        else:
            missing = sum(len(r) for r in ev.missing)
            problem = f"the store holds {ev.stored} of {info.sequences} results ({missing} missing)"
        if run.store_check_failures > self.config.store_checks:
            self._end(run, "FAILED", problem, ev.now, out)
            return
        run.store_check_due = ev.now + min(2.0**run.store_check_failures, 30.0)
        if ev.error is None:
            for rng in ev.missing:
                run.pending.append(rng)
                out.append(SaveBatch(info.run_id, _retry_key(rng), rng))
            lost = sum(len(r) for r in ev.missing)
            run.ok_done = max(0, run.ok_done - lost)
            out.append(Log(info.run_id, "warning", f"{problem}: running them again"))
            self._maybe_suppress(out)
        else:
            out.append(Log(info.run_id, "warning", f"{problem}: checking again"))


def add_series_point(series: dict[str, list[list[float | None]]], partials: RunPartials,
                     limit: int = SERIES_POINTS) -> None:  # fmt: skip
    """Add the merged prefix's point to each output's convergence series (when the prefix
    grew); a series over ``limit`` points drops every other one, keeping its last."""
    k = partials.merged_sequences
    for name, partial in partials.prefix.outputs.items():
        points = series.setdefault(name, [])
        if points and points[-1][0] == k:
            continue
        stats = live_statistics(partial)
        lo, hi = stats["ci95"] or (None, None)
        points.append([k, stats["mean"], lo, hi])
        if len(points) > limit:
            points[:] = points[-1::-2][::-1]


def _targets_met(targets: tuple[tuple[str, str, float], ...], prefix: BlockPartial) -> bool:
    """Whether every target holds over the prefix. A target holds only on a positive
    sem: a zero variance (say, a Bernoulli output with no success yet) says nothing
    about precision."""
    for output, kind, bound in targets:
        stats = prefix.outputs.get(output)
        live = live_statistics(stats) if stats is not None else None
        sem, mean = (live["sem"], live["mean"]) if live else (None, None)
        if sem is None or mean is None or sem <= 0.0:
            return False
        if kind == "sem":
            value = sem
        elif kind == "ci95_halfwidth":
            value = Z95 * sem
        else:  # rel_ci95
            if mean == 0.0:
                return False
            value = Z95 * sem / abs(mean)
        if value > bound:
            return False
    return True


def _infrastructure(ev: TaskStatus) -> bool:
    """Whether a task's end is the cluster's doing, not the model's or its executor's."""
    return ev.state in INFRASTRUCTURE_STATES or ev.reason in INFRASTRUCTURE_REASONS


def _differs(before: tuple[float, float], now: tuple[float, float]) -> bool:
    """Whether (cpus, mem) offered changed by more than 10% (and 0.05 cpus or 64 MB)."""
    cpus = abs(now[0] - before[0]) > max(0.1 * before[0], 0.05)
    mem = abs(now[1] - before[1]) > max(0.1 * before[1], 64.0)
    return cpus or mem


def _run_order(run: RunTrack) -> tuple[int, float, str]:
    """An owner's runs take offers by priority (higher first), then age (older first)."""
    return (-run.info.priority, run.info.created_at, run.info.run_id)


def _executor_limit(info: RunInfo) -> float:
    return info.max_executors if info.max_executors is not None else math.inf


def _retry_key(rng: Range) -> str:
    return f"retry-{rng.start}"


def _suffix(ident: str) -> int:
    tail = ident.rsplit(".", 1)[-1].lstrip("te")
    return int(tail) if tail.isdigit() else 0

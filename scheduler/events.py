"""Events into the scheduler state machine and commands out of it.

Small frozen dataclasses: the pymesos edge turns callbacks into events, the state
machine answers with commands, and the edge carries them out (HTTP calls to the
master, store writes, the summary job). Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ancho.messages import BatchReport
from ancho.partials import BlockPartial, RunPartials

#: One block's partial summary, by block index.
Partials = tuple[tuple[int, BlockPartial], ...]

# --- events ----------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class RunInfo:
    """What the scheduler needs of a run (from its stored spec)."""

    run_id: str
    sequences: int
    cpus: float = 1.0
    mem_mb: int = 512
    max_executors: int | None = None
    max_attempts: int = 3
    timeout_s: float | None = None
    containerizer: str = "process"
    image: str = "ancho/executor:latest"
    network: str = "none"
    mounts: tuple[str, ...] = ()  # host folders a container executor needs, read-only
    #: Batches are cut out of whole blocks of this many sequences (the run's partials').
    block_size: int = 1
    #: Precision targets: (output, "sem" | "ci95_halfwidth" | "rel_ci95", bound).
    targets: tuple[tuple[str, str, float], ...] = ()
    #: Whose run it is: offers are shared fairly between owners (``scheduler.shares``).
    owner: str = ""
    #: Orders an owner's own runs (0-100, higher first), then ``created_at`` (older first).
    priority: int = 50
    created_at: float = 0.0


@dataclass(slots=True, frozen=True)
class Range:
    """Sequences ``start..stop-1`` at their ``attempt``-th try (1-based)."""

    start: int
    stop: int
    attempt: int = 1

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass(slots=True, frozen=True)
class Submit:
    """A run to schedule; ``next_index``/``pending`` resume a run after a restart."""

    run: RunInfo
    now: float
    next_index: int = 0
    pending: tuple[Range, ...] = ()
    #: (task_id, executor_id, agent_id, range) of batches that were in flight.
    in_flight: tuple[tuple[str, str, str, Range], ...] = ()
    ok: int = 0
    failed: int = 0
    partials: Partials = field(default=(), hash=False)  # stored before a restart


@dataclass(slots=True, frozen=True)
class Offer:
    """The part of a Mesos offer the scheduler looks at."""

    offer_id: str
    agent_id: str
    hostname: str
    cpus: float
    mem_mb: float


@dataclass(slots=True, frozen=True)
class Offers:
    """Resource offers from the master."""

    offers: tuple[Offer, ...]
    now: float


@dataclass(slots=True, frozen=True)
class TaskStatus:
    """A task status update, with the executor's report if it sent one."""

    task_id: str
    state: str
    now: float
    reason: str = ""
    message: str = ""
    report: BatchReport | None = None
    executor_id: str = ""
    agent_id: str = ""
    #: The partials of blocks the batch completed (parsed from the report's).
    partials: Partials = field(default=(), hash=False)


@dataclass(slots=True, frozen=True)
class ExecutorLost:
    """An executor terminated (Mesos FAILURE event with an executor id)."""

    executor_id: str
    agent_id: str
    status: int | None
    now: float


@dataclass(slots=True, frozen=True)
class AgentLost:
    """An agent is gone, with every executor on it."""

    agent_id: str
    now: float


@dataclass(slots=True, frozen=True)
class KillRun:
    """A person asked to kill the run."""

    run_id: str
    now: float


@dataclass(slots=True, frozen=True)
class Subscribed:
    """The framework (re)subscribed: reconcile what we believe is in flight."""

    now: float
    reregistered: bool = False


@dataclass(slots=True, frozen=True)
class Tick:
    """Time passes: timeouts, throttled count updates."""

    now: float


@dataclass(slots=True, frozen=True)
class Quotas:
    """Each user's cpu quota (``ancho user add NAME --max-cpus C``); users not named
    have none."""

    max_cpus: tuple[tuple[str, float], ...]
    now: float


@dataclass(slots=True, frozen=True)
class SummaryDone:
    """The summary job ended (``error`` set when it could not run)."""

    run_id: str
    ok: int
    failed: int
    now: float
    error: str | None = None


@dataclass(slots=True, frozen=True)
class FrameworkRemoved:
    """The master removed the framework (its tasks are gone): the edge registers a new
    one, and every run's batches in flight must run again."""

    framework_id: str
    now: float


@dataclass(slots=True, frozen=True)
class CommandFailed:
    """A command could not be carried out (the master or the store refused or is away)."""

    command: Command
    error: str
    now: float


@dataclass(slots=True, frozen=True)
class StoreChecked:
    """What the store holds of a run whose batches have all ended: ``stored`` results,
    and the index ranges that are missing (``error``: the store could not be read)."""

    run_id: str
    stored: int
    missing: tuple[Range, ...]
    now: float
    error: str | None = None


@dataclass(slots=True, frozen=True)
class CredentialAsked:
    """An executor asked for its run's store credential (a framework message)."""

    run_id: str
    executor_id: str
    agent_id: str
    now: float


Event = (
    Submit
    | Offers
    | TaskStatus
    | ExecutorLost
    | AgentLost
    | KillRun
    | Subscribed
    | Tick
    | Quotas
    | SummaryDone
    | CredentialAsked
    | FrameworkRemoved
    | CommandFailed
    | StoreChecked
)

# --- commands --------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class TaskLaunch:
    """One batch task on one executor (new or already running)."""

    task_id: str
    run_id: str
    executor_id: str
    range: Range
    new_executor: bool
    run: RunInfo


@dataclass(slots=True, frozen=True)
class Launch:
    """Accept an offer with LAUNCH operations."""

    offer_id: str
    agent_id: str
    tasks: tuple[TaskLaunch, ...]


@dataclass(slots=True, frozen=True)
class Decline:
    """Decline offers, not to be re-offered for ``refuse_s`` seconds."""

    offer_ids: tuple[str, ...]
    refuse_s: float


@dataclass(slots=True, frozen=True)
class Revive:
    """Ask for offers again."""


@dataclass(slots=True, frozen=True)
class Suppress:
    """No work: stop sending offers."""


@dataclass(slots=True, frozen=True)
class KillTask:
    """Kill a task."""

    task_id: str
    agent_id: str


@dataclass(slots=True, frozen=True)
class StopExecutor:
    """Ask an idle executor to exit (framework message; it also exits when idle)."""

    executor_id: str
    agent_id: str


@dataclass(slots=True, frozen=True)
class Reconcile:
    """Explicit reconciliation of these (task id, agent id) pairs (an agent id may be
    empty when unknown); none: implicit reconciliation of all tasks."""

    tasks: tuple[tuple[str, str], ...]


@dataclass(slots=True, frozen=True)
class UpdateRun:
    """Persist some fields of a run."""

    run_id: str
    fields: dict[str, Any] = field(hash=False)


@dataclass(slots=True, frozen=True)
class SaveBatch:
    """Persist a batch that is in flight (task_id set) or waiting to be retried."""

    run_id: str
    key: str
    range: Range
    executor_id: str = ""
    agent_id: str = ""


@dataclass(slots=True, frozen=True)
class ForgetBatch:
    """Drop a persisted batch."""

    run_id: str
    key: str


@dataclass(slots=True, frozen=True)
class WriteFailed:
    """Store sequences that never ran to completion as failed (attempts exhausted)."""

    run_id: str
    range: Range
    reason: str


@dataclass(slots=True, frozen=True)
class StartSummary:
    """All sequences are in (or the targets are met at ``stopped``): compute the summary
    from ``partials``, which the state machine no longer touches."""

    run_id: str
    partials: RunPartials = field(hash=False)
    stopped: int | None = None
    has_targets: bool = False


@dataclass(slots=True, frozen=True)
class CheckStored:
    """Count what the store holds of the run before it is summarized (answer:
    StoreChecked)."""

    run_id: str
    sequences: int


@dataclass(slots=True, frozen=True)
class PutLive:
    """Persist a running run's live statistics (DESIGN.md, ``"live"``) and its outputs'
    convergence series: ``{"live": {...}, "series": {output: [[k, mean, lo, hi], ...]}}``."""

    run_id: str
    live: dict[str, Any] = field(hash=False)


@dataclass(slots=True, frozen=True)
class Log:
    """A scheduler line in the run's log."""

    run_id: str
    level: str
    message: str


@dataclass(slots=True, frozen=True)
class SendCredential:
    """Answer an executor of the run with the run's store credential."""

    run_id: str
    executor_id: str
    agent_id: str


@dataclass(slots=True, frozen=True)
class RefuseCredential:
    """Tell whoever asked that it gets no credential, and why."""

    run_id: str
    executor_id: str
    agent_id: str
    reason: str


@dataclass(slots=True, frozen=True)
class RevokeCredential:
    """The run ended: its store credential stops working."""

    run_id: str


Command = (
    Launch
    | Decline
    | Revive
    | Suppress
    | KillTask
    | StopExecutor
    | Reconcile
    | UpdateRun
    | SaveBatch
    | ForgetBatch
    | WriteFailed
    | StartSummary
    | CheckStored
    | PutLive
    | Log
    | SendCredential
    | RefuseCredential
    | RevokeCredential
)

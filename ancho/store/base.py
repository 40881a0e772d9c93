"""The store interface: runs, per-sequence results, summaries, events, uploaded models.

Implementations: :class:`~ancho.store.sqlite.SQLiteStore` (one machine) and, next, a
Cassandra store (cluster). Every write is an idempotent upsert keyed by run and
sequence, so a retried batch never duplicates or loses a sequence.
"""

from __future__ import annotations

import abc
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ModelError
from ..results import SequenceResult

RunState = Literal["QUEUED", "STAGING", "RUNNING", "SUMMARIZING", "FINISHED", "FAILED", "KILLED"]
TERMINAL_STATES: frozenset[str] = frozenset({"FINISHED", "FAILED", "KILLED"})


@dataclass(slots=True)
class RunRecord:
    """A run as stored: its spec, state, counts and timestamps."""

    id: str
    name: str
    spec: dict[str, Any]
    seed: int
    sequences: int
    state: RunState = "QUEUED"
    owner: str = "local"
    outputs: list[str] | None = None
    ok: int = 0
    failed: int = 0
    running: int = 0
    reason: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    kill_requested: bool = False
    next_index: int = 0

    @property
    def done(self) -> bool:
        """Whether the run reached a terminal state."""
        return self.state in TERMINAL_STATES

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``ancho status`` and ``GET /api/v1/runs/{id}``."""
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "owner": self.owner,
            "seed": self.seed,
            "counts": {
                "total": self.sequences,
                "ok": self.ok,
                "failed": self.failed,
                "running": self.running,
            },
            "outputs": self.outputs,
            "reason": self.reason,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


@dataclass(slots=True, frozen=True)
class Event:
    """One log line of a run: from the scheduler, an executor or the model."""

    id: int
    run_id: str
    ts: float
    source: str
    level: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON shape of a log line."""
        return {
            "id": self.id,
            "ts": self.ts,
            "source": self.source,
            "level": self.level,
            "message": self.message,
        }


@dataclass(slots=True, frozen=True)
class BatchRecord:
    """A batch in flight, persisted so a restarted scheduler can reconcile it."""

    run_id: str
    task_id: str
    start: int
    stop: int
    attempt: int
    executor_id: str
    agent_id: str = ""


@dataclass(slots=True, frozen=True)
class ExperimentRecord:
    """An experiment: its sweep spec, and one run per point, in the sweep's order."""

    id: str
    name: str
    owner: str
    spec: dict[str, Any]
    points: list[dict[str, Any]]
    runs: list[str]
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        """As the API lists it: its id, name, owner, created_at, and ``points``, each
        ``{"parameters", "run"}``."""
        return {
            "id": self.id,
            "name": self.name,
            "owner": self.owner,
            "created_at": self.created_at,
            "points": [
                {"parameters": p, "run": r} for p, r in zip(self.points, self.runs, strict=True)
            ],
        }


@dataclass(slots=True, frozen=True)
class UserRecord:
    """A user: the SHA-256 of their API token, and the store URL their runs live in."""

    name: str
    token_sha256: str
    store: str
    created_at: float
    revoked: bool = False


@dataclass(slots=True)
class Counts:
    """Stored sequences of a run by status."""

    ok: int = 0
    failed: int = 0
    by_attempt: dict[int, int] = field(default_factory=dict)


def check_model_digest(digest: str, data: bytes) -> None:
    """Raise :class:`~ancho.errors.ModelError` unless ``data`` has SHA-256 ``digest``."""
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ModelError(f"model digest {digest!r}: must be 64 lowercase hex digits")
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise ModelError(f"model sha256:{digest}: the data's sha256 is {actual}")


def decode_result(row: tuple[Any, ...]) -> SequenceResult:
    """A stored row ``(sequence, status, outputs JSON, error JSON | None, attempt,
    duration_s)``, as both stores keep it, back into a result."""
    seq, status, outputs, error, attempt, duration = row
    return SequenceResult(
        sequence=seq,
        status=status,
        outputs=json.loads(outputs),
        error=None if error is None else json.loads(error),
        attempt=attempt,
        duration_s=duration,
    )


class Store(abc.ABC):
    """What every result store does. Implementations are safe to share between threads."""

    url: str
    #: How far below the highest id seen a log line may still be stored (ids that come
    #: from writers' clocks): what a follower reads back (:mod:`ancho.store.follow`).
    late_event_ids: int = 0

    # runs ---------------------------------------------------------------
    @abc.abstractmethod
    def create_run(self, run: RunRecord) -> None:
        """Insert a new run."""

    @abc.abstractmethod
    def get_run(self, run_id: str) -> RunRecord:
        """The run, or :class:`~ancho.errors.NotFound`."""

    @abc.abstractmethod
    def list_runs(self, owner: str | None = None) -> list[RunRecord]:
        """Runs, newest first (only ``owner``'s when given)."""

    @abc.abstractmethod
    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set some fields of a run (state, counts, reason, timestamps, ...)."""

    @abc.abstractmethod
    def register_outputs(self, run_id: str, names: Sequence[str]) -> list[str]:
        """Record the run's output names if none are yet; return the recorded ones."""

    # results ------------------------------------------------------------
    @abc.abstractmethod
    def write_results(self, run_id: str, results: Sequence[SequenceResult]) -> None:
        """Upsert results keyed by (run, sequence): a rewrite replaces, never duplicates."""

    @abc.abstractmethod
    def iter_results(
        self, run_id: str, start: int = 0, stop: int | None = None
    ) -> Iterator[SequenceResult]:
        """Stored results in sequence order, read in pages."""

    @abc.abstractmethod
    def count_results(self, run_id: str) -> Counts:
        """How many sequences of the run are stored, by status."""

    # summaries ----------------------------------------------------------
    @abc.abstractmethod
    def put_summary(self, run_id: str, summary: dict[str, Any]) -> None:
        """Store the run's summary JSON."""

    @abc.abstractmethod
    def get_summary(self, run_id: str) -> dict[str, Any] | None:
        """The run's summary, or None before it is computed."""

    # events -------------------------------------------------------------
    @abc.abstractmethod
    def append_events(self, run_id: str, events: Iterable[tuple[str, str, str]]) -> None:
        """Append ``(source, level, message)`` log lines to a run."""

    @abc.abstractmethod
    def iter_events(self, run_id: str, after: int = 0) -> list[Event]:
        """A run's log lines with id greater than ``after``, in order."""

    # batches in flight and framework metadata ----------------------------
    @abc.abstractmethod
    def put_partial(self, run_id: str, block: int, partial: Mapping[str, Any]) -> None:
        """Store the partial summary of a block of sequence indices (JSON-able), replacing
        an earlier one of the same block (a retried block)."""

    @abc.abstractmethod
    def list_partials(self, run_id: str) -> dict[int, dict[str, Any]]:
        """The run's stored partial summaries by block."""

    @abc.abstractmethod
    def put_live(self, run_id: str, live: Mapping[str, Any]) -> None:
        """Store a run's live document, ``{"live": statistics, "series": convergence}``
        (replacing the earlier one)."""

    @abc.abstractmethod
    def get_live(self, run_id: str) -> dict[str, Any] | None:
        """The run's latest live document, or None."""

    @abc.abstractmethod
    def truncate_run(self, run_id: str, sequences: int, blocks: int) -> None:
        """Remove the run's results from sequence ``sequences`` on, and its partials from
        block ``blocks`` on (a run stopped by its targets keeps exactly ``0..k-1``)."""

    @abc.abstractmethod
    def put_batch(self, batch: BatchRecord) -> None:
        """Remember a launched batch."""

    @abc.abstractmethod
    def delete_batch(self, run_id: str, task_id: str) -> None:
        """Forget a batch that reached a terminal state."""

    @abc.abstractmethod
    def list_batches(self, run_id: str) -> list[BatchRecord]:
        """The run's batches in flight."""

    @abc.abstractmethod
    def get_meta(self, key: str) -> str | None:
        """A framework-wide value such as the framework ID."""

    @abc.abstractmethod
    def set_meta(self, key: str, value: str | None) -> None:
        """Set (or, with None, delete) a framework-wide value."""

    # experiments ------------------------------------------------------------
    @abc.abstractmethod
    def create_experiment(self, experiment: ExperimentRecord) -> None:
        """Insert a new experiment (its runs are created with :meth:`create_run`)."""

    @abc.abstractmethod
    def get_experiment(self, experiment_id: str) -> ExperimentRecord:
        """The experiment, or :class:`~ancho.errors.NotFound`."""

    @abc.abstractmethod
    def list_experiments(self, owner: str | None = None) -> list[ExperimentRecord]:
        """Experiments, newest first (only ``owner``'s when given)."""

    # users (tokens for the REST API; stored hashed) -------------------------
    @abc.abstractmethod
    def put_user(self, user: UserRecord) -> None:
        """Insert or replace a user record."""

    @abc.abstractmethod
    def list_users(self) -> list[UserRecord]:
        """Every user, by name."""

    # models uploaded to the server (``sha256:`` sources) ---------------------------------
    @abc.abstractmethod
    def put_model(self, digest: str, data: bytes) -> None:
        """Keep a model tarball under its SHA-256 ``digest`` (64 lowercase hex digits).

        Raises :class:`~ancho.errors.ModelError` when ``data`` does not have that digest;
        storing the same model again is a no-op.
        """

    @abc.abstractmethod
    def get_model(self, digest: str) -> bytes:
        """The model tarball with this digest, or :class:`~ancho.errors.NotFound`."""

    def export_ok_parquet(self, run_id: str, path: str) -> int:
        """Write the run's ok sequences to a Parquet file for the summary job.

        Columns: ``sequence``, ``status``, one per output. Stores may override this with
        a faster path; this one streams :meth:`iter_results` through pyarrow.
        """
        from ..parquet import write_results_parquet

        ok = (r for r in self.iter_results(run_id) if r.status == "ok")
        return write_results_parquet(ok, path, ok_only=True)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

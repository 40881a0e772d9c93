"""The server's store: one :class:`Store` over the admin store and every user's store.

With Cassandra each user's runs live in the user's own keyspace, reached with the user's
own role (``UserRecord.store``); the scheduler, the summary job and the API see one store
that routes each call by run to its owner's store. With SQLite every user's URL is the
admin's file, so routing ends in one store. Framework metadata and users stay in the
admin store.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from ..errors import AnchoError, NotFound
from ..results import SequenceResult
from ..store import (
    BatchRecord,
    Counts,
    Event,
    ExperimentRecord,
    RunRecord,
    Store,
    UserRecord,
    open_store,
)


class RoutingStore(Store):
    """Routes run-scoped calls to the run owner's store (opened once per URL)."""

    def __init__(self, admin: Store) -> None:
        self.admin = admin
        self.url = admin.url
        self.late_event_ids = admin.late_event_ids  # users' stores are of the admin's kind
        self._lock = threading.Lock()
        self._by_url: dict[str, Store] = {admin.url: admin}
        self._owner_of: dict[str, str] = {}

    # --- users and their stores --------------------------------------------------------
    def user(self, name: str) -> UserRecord:
        """The (not revoked) user record of ``name``."""
        for u in self.admin.list_users():
            if u.name == name and not u.revoked:
                return u
        raise NotFound(f"no user {name!r}")

    def for_user(self, name: str) -> Store:
        """The store holding ``name``'s runs."""
        return self._open(self.user(name).store)

    def _open(self, url: str) -> Store:
        with self._lock:
            store = self._by_url.get(url)
            if store is None:
                store = self._by_url[url] = open_store(url)
            return store

    def _for_run(self, run_id: str) -> Store:
        owner = self._owner_of.get(run_id)
        if owner is not None:
            return self.for_user(owner)
        for u in self.admin.list_users():  # a run created before this process started
            if u.revoked:
                continue
            store = self._open(u.store)
            try:
                run = store.get_run(run_id)
            except NotFound:
                continue
            self._owner_of[run_id] = run.owner
            return store
        raise NotFound(f"no run {run_id!r}")

    def url_for_run(self, run_id: str) -> str:
        """The URL (with the owner's role) executors and the summary job use."""
        return self._for_run(run_id).url

    # --- runs ---------------------------------------------------------------------------
    def create_run(self, run: RunRecord) -> None:
        """Create the run in its owner's store."""
        self.for_user(run.owner).create_run(run)
        self._owner_of[run.id] = run.owner

    def get_run(self, run_id: str) -> RunRecord:
        """The run from its owner's store."""
        return self._for_run(run_id).get_run(run_id)

    def list_runs(self, owner: str | None = None) -> list[RunRecord]:
        """``owner``'s runs, or every user's (newest first)."""
        if owner is not None:
            return self.for_user(owner).list_runs(owner)
        runs: dict[str, RunRecord] = {}
        seen: set[str] = set()
        for u in self.admin.list_users():
            if u.revoked or u.store in seen:
                continue
            seen.add(u.store)
            try:
                for run in self._open(u.store).list_runs():
                    runs[run.id] = run
                    self._owner_of[run.id] = run.owner
            except AnchoError:
                continue  # an unreachable or revoked user's store hides only their runs
        return sorted(runs.values(), key=lambda r: r.created_at, reverse=True)

    # --- experiments --------------------------------------------------------------------
    def create_experiment(self, experiment: ExperimentRecord) -> None:
        """Create the experiment in its owner's store."""
        self.for_user(experiment.owner).create_experiment(experiment)

    def get_experiment(self, experiment_id: str) -> ExperimentRecord:
        """The experiment, from whichever user's store holds it."""
        for store in self._user_stores():
            try:
                return store.get_experiment(experiment_id)
            except NotFound:
                continue
        raise NotFound(f"no experiment {experiment_id!r}")

    def list_experiments(self, owner: str | None = None) -> list[ExperimentRecord]:
        """``owner``'s experiments, or every user's (newest first)."""
        if owner is not None:
            return self.for_user(owner).list_experiments(owner)
        found: list[ExperimentRecord] = []
        for store in self._user_stores():
            try:
                found.extend(store.list_experiments())
            except AnchoError:
                continue  # an unreachable user's store hides only their experiments
        return sorted(found, key=lambda e: e.created_at, reverse=True)

    def _user_stores(self) -> list[Store]:
        """Each live user's store, once."""
        urls = dict.fromkeys(u.store for u in self.admin.list_users() if not u.revoked)
        return [self._open(url) for url in urls]

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Update in the owner's store."""
        self._for_run(run_id).update_run(run_id, **fields)

    def register_outputs(self, run_id: str, names: Sequence[str]) -> list[str]:
        """Register in the owner's store."""
        return self._for_run(run_id).register_outputs(run_id, names)

    # --- results, summaries, events, batches ----------------------------------------------
    def write_results(self, run_id: str, results: Sequence[SequenceResult]) -> None:
        """Write to the owner's store."""
        self._for_run(run_id).write_results(run_id, results)

    def iter_results(
        self, run_id: str, start: int = 0, stop: int | None = None
    ) -> Iterator[SequenceResult]:
        """Read from the owner's store."""
        return self._for_run(run_id).iter_results(run_id, start, stop)

    def count_results(self, run_id: str) -> Counts:
        """Count in the owner's store."""
        return self._for_run(run_id).count_results(run_id)

    def put_summary(self, run_id: str, summary: dict[str, Any]) -> None:
        """Store the summary with the run."""
        self._for_run(run_id).put_summary(run_id, summary)

    def get_summary(self, run_id: str) -> dict[str, Any] | None:
        """The summary kept with the run."""
        return self._for_run(run_id).get_summary(run_id)

    def append_events(self, run_id: str, events: Iterable[tuple[str, str, str]]) -> None:
        """Log lines go with the run."""
        self._for_run(run_id).append_events(run_id, events)

    def iter_events(self, run_id: str, after: int = 0) -> list[Event]:
        """The run's log lines."""
        return self._for_run(run_id).iter_events(run_id, after)

    def put_batch(self, batch: BatchRecord) -> None:
        """Batches are kept with their run."""
        self._for_run(batch.run_id).put_batch(batch)

    def delete_batch(self, run_id: str, task_id: str) -> None:
        """Forget a batch of the run."""
        self._for_run(run_id).delete_batch(run_id, task_id)

    def list_batches(self, run_id: str) -> list[BatchRecord]:
        """The run's batches in flight."""
        return self._for_run(run_id).list_batches(run_id)

    def put_partial(self, run_id: str, block: int, partial: Mapping[str, Any]) -> None:
        """In the run owner's store."""
        self._for_run(run_id).put_partial(run_id, block, partial)

    def put_live(self, run_id: str, live: Mapping[str, Any]) -> None:
        """In the run owner's store."""
        self._for_run(run_id).put_live(run_id, live)

    def get_live(self, run_id: str) -> dict[str, Any] | None:
        """From the run owner's store."""
        return self._for_run(run_id).get_live(run_id)

    def truncate_run(self, run_id: str, sequences: int, blocks: int) -> None:
        """In the run owner's store."""
        self._for_run(run_id).truncate_run(run_id, sequences, blocks)

    def list_partials(self, run_id: str) -> dict[int, dict[str, Any]]:
        """From the run owner's store."""
        return self._for_run(run_id).list_partials(run_id)

    def export_ok_parquet(self, run_id: str, path: str) -> int:
        """The owner's store's own (fast) export."""
        return self._for_run(run_id).export_ok_parquet(run_id, path)

    # --- framework-wide: the admin store ----------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        """Framework metadata lives in the admin store."""
        return self.admin.get_meta(key)

    def set_meta(self, key: str, value: str | None) -> None:
        """Framework metadata lives in the admin store."""
        self.admin.set_meta(key, value)

    def put_user(self, user: UserRecord) -> None:
        """Users live in the admin store."""
        self.admin.put_user(user)

    def list_users(self) -> list[UserRecord]:
        """Users live in the admin store."""
        return self.admin.list_users()

    def put_model(self, digest: str, data: bytes) -> None:
        """Not routable by digest alone: use ``for_user(name).put_model``."""
        raise AnchoError("models are uploaded to a user's store (RoutingStore.for_user)")

    def get_model(self, digest: str) -> bytes:
        """Not routable by digest alone: use ``for_user(name).get_model``."""
        raise NotFound(f"no model sha256:{digest} (models live in their user's store)")

    def close(self) -> None:
        """Close every store opened."""
        with self._lock:
            stores = list(self._by_url.values())
        for store in stores:
            close = getattr(store, "close", None)
            if close is not None:
                close()

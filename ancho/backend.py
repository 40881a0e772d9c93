"""Where the query commands read and act: an Ancho server (REST) or a store directly.

The CLI resolves its backend once per invocation (``ancho.cli``, the group's context
object) and every query command calls the same methods, whichever backend it got:
``--server`` wins, then ``--store``, then ``ANCHO_SERVER`` or the config file, else the
store named by ``ANCHO_STORE`` (default ``./.ancho/ancho.db``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from .errors import AnchoError
from .store import Store, open_store

if TYPE_CHECKING:
    from .client import Client
    from .comparison import Row
    from .report import ReportData

__all__ = ["Backend", "LogLine", "ServerBackend", "StoreBackend", "resolve_backend"]

FOLLOW_POLL_S = 0.25
#: Result lines written at once.
LINES_PER_PIECE = 1024


class LogLine(NamedTuple):
    """One line of a run's log."""

    ts: float
    source: str
    level: str
    message: str


class Backend(Protocol):
    """What the query commands need, from a server or from a store."""

    def runs(self) -> list[dict[str, Any]]:
        """The caller's runs, newest first, as the API shows them."""

    def run(self, run_id: str) -> dict[str, Any]:
        """One run's document (state, counts, live statistics while it runs)."""

    def summary(self, run_id: str, *, recompute: bool) -> dict[str, Any]:
        """The contract's summary document."""

    def results(self, run_id: str, fmt: str) -> Iterator[bytes]:
        """The results as JSON lines or CSV (``fmt``), streamed in pieces."""

    def write_parquet(self, run_id: str, path: str) -> None:
        """The results as a Parquet file."""

    def report_data(self, run_id: str) -> ReportData:
        """What a report of the run shows."""

    def logs(self, run_id: str, follow: bool) -> Iterator[LogLine]:
        """The run's log lines; with ``follow``, until the run ends."""

    def kill(self, run_id: str) -> tuple[bool, str]:
        """Ask for the run to be killed: (whether it was asked now, the run's state)."""

    def rows(self, run_id: str) -> Iterator[Row]:
        """The results as (sequence, status, outputs), in sequence order, streamed."""

    def histogram(self, run_id: str, output: str, bins: int) -> dict[str, Any]:
        """One output's histogram document (``ancho.histogram.stream_histogram``)."""

    def experiments(self) -> list[dict[str, Any]]:
        """The caller's experiments, newest first, as the API lists them."""

    def experiment(self, experiment_id: str) -> dict[str, Any]:
        """One experiment's document (``ancho.experiments.experiment_document``, full)."""


@dataclass(slots=True)
class ServerBackend:
    """Through an Ancho server's REST API."""

    client: Client

    def runs(self) -> list[dict[str, Any]]:
        return self.client.runs()

    def run(self, run_id: str) -> dict[str, Any]:
        return self.client.run(run_id)

    def summary(self, run_id: str, *, recompute: bool) -> dict[str, Any]:
        return self.client.summary(run_id, recompute=recompute)

    def results(self, run_id: str, fmt: str) -> Iterator[bytes]:
        return self.client.results(run_id, fmt)

    def write_parquet(self, run_id: str, path: str) -> None:
        raise AnchoError("--format parquet: not through a server; use jsonl or csv")

    def report_data(self, run_id: str) -> ReportData:
        from .client import record_from_dict
        from .report import ReportData

        run = record_from_dict(self.client.run(run_id))
        return ReportData(run, self.client.summary(run_id), self.client.result_rows(run_id))

    def logs(self, run_id: str, follow: bool) -> Iterator[LogLine]:
        for ev in self.client.logs(run_id, follow):
            yield LogLine(ev["ts"], ev["source"], ev["level"], ev["message"])

    def kill(self, run_id: str) -> tuple[bool, str]:
        doc = self.client.kill(run_id)
        return bool(doc.get("kill_requested")), str(doc.get("state", ""))

    def rows(self, run_id: str) -> Iterator[Row]:
        for doc in self.client.result_rows(run_id):
            yield doc["sequence"], doc["status"], doc.get("outputs") or {}

    def histogram(self, run_id: str, output: str, bins: int) -> dict[str, Any]:
        return self.client.histogram(run_id, output, bins)

    def experiments(self) -> list[dict[str, Any]]:
        return self.client.experiments()

    def experiment(self, experiment_id: str) -> dict[str, Any]:
        return self.client.experiment(experiment_id)


@dataclass(slots=True)
class StoreBackend:
    """Straight to a store (SQLite or Cassandra), as its owner or admin."""

    store: Store

    def runs(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.store.list_runs()]

    def run(self, run_id: str) -> dict[str, Any]:
        from .output import run_document

        return run_document(self.store.get_run(run_id), self.store)

    def summary(self, run_id: str, *, recompute: bool) -> dict[str, Any]:
        from .output import summary_document

        record, stored = self.store.get_run(run_id), self.store.get_summary(run_id)
        if recompute:
            from .recompute import recompute_outputs

            stored = {**(stored or {}), "outputs": recompute_outputs(self.store, record)}
        return summary_document(record, stored)

    def results(self, run_id: str, fmt: str) -> Iterator[bytes]:
        from .output import csv_lines, iter_lines

        run = self.store.get_run(run_id)
        rows = self.store.iter_results(run_id)
        lines = csv_lines(rows, list(run.outputs or [])) if fmt == "csv" else iter_lines(rows)
        piece: list[str] = []
        for line in lines:
            piece.append(line)
            if len(piece) == LINES_PER_PIECE:
                yield "".join(piece).encode()
                piece.clear()
        yield "".join(piece).encode()

    def write_parquet(self, run_id: str, path: str) -> None:
        from .extras import require

        self.store.get_run(run_id)
        require("parquet", "`ancho results --format parquet`")
        from .parquet import write_results_parquet

        write_results_parquet(self.store.iter_results(run_id), path)

    def report_data(self, run_id: str) -> ReportData:
        from .report import ReportData

        run = self.store.get_run(run_id)
        return ReportData(run, self.store.get_summary(run_id), self.store.iter_results(run_id))

    def logs(self, run_id: str, follow: bool) -> Iterator[LogLine]:
        from .store.follow import EventFollower

        self.store.get_run(run_id)
        lines = EventFollower(self.store, run_id)
        while True:
            done = self.store.get_run(run_id).done  # read before the events: none is missed
            for ev in lines.poll():
                yield LogLine(ev.ts, ev.source, ev.level, ev.message)
            if not follow or done:
                return
            time.sleep(FOLLOW_POLL_S)

    def kill(self, run_id: str) -> tuple[bool, str]:
        run = self.store.get_run(run_id)
        if run.done:
            return False, run.state
        self.store.update_run(run_id, kill_requested=1)
        return True, run.state

    def rows(self, run_id: str) -> Iterator[Row]:
        self.store.get_run(run_id)
        for r in self.store.iter_results(run_id):
            yield r.sequence, r.status, r.outputs

    def histogram(self, run_id: str, output: str, bins: int) -> dict[str, Any]:
        from .histogram import stream_histogram, summary_range

        self.store.get_run(run_id)
        bounds = summary_range(self.store.get_summary(run_id), output)
        return stream_histogram(
            lambda stop: self.store.iter_results(run_id, 0, stop), output, bins, bounds
        )

    def experiments(self) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.store.list_experiments()]

    def experiment(self, experiment_id: str) -> dict[str, Any]:
        from .experiments import experiment_document

        experiment = self.store.get_experiment(experiment_id)
        return experiment_document(experiment, self.store, full=True)


def resolve_backend(server_flag: str | None, store_url: str | None) -> Backend:
    """The backend the flags and environment name (``--server`` wins, then ``--store``)."""
    from .client import Client, server_url

    if server_flag:
        return ServerBackend(Client.connect(server_url(server_flag) or server_flag))
    if store_url:
        return StoreBackend(open_store(store_url))
    url = server_url(None)
    if url:
        return ServerBackend(Client.connect(url))
    return StoreBackend(open_store(None))

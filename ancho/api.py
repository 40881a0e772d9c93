"""Ancho from Python: runs and experiments as objects (``import ancho``).

``ancho.run(model, sequences=…)`` runs on this machine (the embedded cluster and the
local store, as ``ancho run``) and returns a :class:`Run` once the run has ended.
``ancho.connect()`` returns a :class:`Client` of an Ancho server, whose ``submit`` returns
a :class:`Run` at once; ``Run.wait()`` follows it. Every object reads through the same
:class:`~ancho.backend.Backend` the CLI's query commands use, so a run read from the
store and one read through a server answer alike. Bad input raises the
:class:`~ancho.errors.AnchoError` hierarchy with the CLI's one-paragraph messages.

``model`` is a model folder, a spec file's path, or a spec ``dict``; keyword arguments
override the spec's values, as the CLI's flags do.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from .backend import Backend, LogLine, ServerBackend, StoreBackend
from .errors import AnchoError
from .spec import Overrides, RunSpec, load_spec, spec_from_data

__all__ = ["Client", "Experiment", "Run", "compare", "connect", "run", "sweep"]

POLL_S = 0.5
#: Bins of the histograms in a run's notebook view.
HISTOGRAM_BINS = 30


class Run:
    """One run: its id, state, summary, logs and report (reads are never cached)."""

    def __init__(self, backend: Backend, run_id: str) -> None:
        self._backend = backend
        self.id = run_id

    def __repr__(self) -> str:
        return f"<ancho.Run {self.id} {self.state}>"

    def _repr_html_(self) -> str:
        """Jupyter's view: state, progress, the summary table and, once the run has
        ended, a small histogram of each numeric output."""
        from .run_html import run_html

        doc = self.info()
        ended = doc.get("state") in ("FINISHED", "FAILED", "KILLED")
        summary = self.summary() if ended else None
        histograms: list[Mapping[str, Any]] = []
        for name, stats in ((summary or {}).get("outputs") or {}).items():
            if isinstance(stats.get("mean"), int | float):
                histograms.append(self._backend.histogram(self.id, name, HISTOGRAM_BINS))
        return run_html(doc, summary, histograms)

    def info(self) -> dict[str, Any]:
        """The run's document, as ``ancho status RUN`` prints it."""
        return self._backend.run(self.id)

    @property
    def state(self) -> str:
        """QUEUED, STAGING, RUNNING, SUMMARIZING, FINISHED, FAILED or KILLED."""
        return str(self.info()["state"])

    def wait(self, progress: bool = True, *, timeout_s: float | None = None,
             stream: TextIO | None = None) -> Run:  # fmt: skip
        """Wait until the run has ended (a progress bar on ``stream``, default stderr,
        when ``progress``); return the run. AnchoError after ``timeout_s``."""
        from .client import follow

        follow(self.info, (stream or sys.stderr) if progress else None, POLL_S, timeout_s)
        return self

    def summary(self, *, recompute: bool = False) -> dict[str, Any]:
        """The summary document (DESIGN.md, "Stored results"), as ``ancho summary``."""
        return self._backend.summary(self.id, recompute=recompute)

    def live(self) -> dict[str, Any]:
        """The live statistics of the sequences in so far (empty before any)."""
        return dict(self.info().get("live") or {})

    def rows(self) -> Iterator[dict[str, Any]]:
        """The results, one dict per sequence in sequence order, as ``ancho results``
        prints them (``{"sequence", "status", "outputs", …}``), streamed."""
        for sequence, status, outputs in self._backend.rows(self.id):
            yield {"sequence": sequence, "status": status, "outputs": outputs}

    def results(self, columns: list[str] | None = None) -> Any:
        """The results as a pandas DataFrame, one row per sequence in sequence order:
        ``sequence``, ``status``, then each output (or those named in ``columns``),
        streamed from the store or server (the ``notebook`` extra)."""
        from .frames import results_frame

        return results_frame(self._columns(columns))

    def to_arrow(self, columns: list[str] | None = None) -> Any:
        """The results as a pyarrow Table, with :meth:`results`'s columns."""
        from .frames import results_table

        return results_table(self._columns(columns))

    def summary_frame(self) -> Any:
        """The summary as a DataFrame: one row per output, one column per statistic."""
        from .frames import summary_frame

        return summary_frame(self.summary())

    def _columns(self, columns: list[str] | None) -> dict[str, Any]:
        from .extras import require
        from .frames import result_columns

        require("notebook", "Run.results()")
        outputs = list(self.info().get("outputs") or [])
        unknown = [c for c in columns or [] if c not in outputs]
        if unknown:
            raise AnchoError(f"columns: run {self.id} has no output {', '.join(map(repr, unknown))}"
                             f" (it has: {', '.join(outputs) or 'none'})")  # fmt: skip
        return result_columns(self._backend.rows(self.id), outputs, columns)

    def logs(self, follow: bool = False) -> Iterator[LogLine]:
        """The run's log lines; with ``follow``, until the run ends."""
        return self._backend.logs(self.id, follow)

    def kill(self) -> bool:
        """Ask for the run to be killed; False when it had already ended."""
        requested, _ = self._backend.kill(self.id)
        return requested

    def report(self, path: str | Path, pdf: bool = False) -> Path:
        """Write the run's self-contained HTML report (or a PDF) to ``path``."""
        from .report import build_report, check_output_path, find_chromium, save_report

        target = check_output_path(path)
        chromium = find_chromium() if pdf else None
        data = self._backend.report_data(self.id)
        save_report(build_report(data.run, data.summary, data.results), target, pdf=pdf,
                    chromium=chromium)  # fmt: skip
        return target


class Experiment:
    """A sweep: one run per point, all with the spec's seed (common random numbers)."""

    def __init__(self, backend: Backend, experiment_id: str) -> None:
        self._backend = backend
        self.id = experiment_id

    def __repr__(self) -> str:
        return f"<ancho.Experiment {self.id} {self.state}>"

    def info(self) -> dict[str, Any]:
        """The experiment document (``ancho experiment status EXP``): its points, with
        each one's parameters, run, state and summary."""
        return self._backend.experiment(self.id)

    @property
    def state(self) -> str:
        """QUEUED, RUNNING, FINISHED, FAILED or KILLED (from its runs' states)."""
        return str(self.info()["state"])

    def runs(self) -> list[Run]:
        """Each point's run, in the sweep's order."""
        return [Run(self._backend, str(p["run"])) for p in self.info()["points"]]

    def wait(self, *, timeout_s: float | None = None) -> Experiment:
        """Wait until every point's run has ended; return the experiment."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while (state := self.state) not in ("FINISHED", "FAILED", "KILLED"):
            if deadline is not None and time.monotonic() >= deadline:
                raise AnchoError(f"experiment {self.id} is still {state} after {timeout_s:g} s")
            time.sleep(POLL_S)
        return self

    def frame(self) -> Any:
        """One row per point: ``point``, ``run``, ``state``, its parameters, then each
        output's ``_mean``, ``_sem``, ``_ci95_lo`` and ``_ci95_hi`` (``ancho experiment
        results --format csv``'s columns), as a pandas DataFrame."""
        from .experiments import point_rows
        from .extras import require

        require("notebook", "Experiment.frame()")
        import pandas as pd

        rows = point_rows(self.info())
        params = list(dict.fromkeys(k for r in rows for k in r["parameters"]))
        outputs = list(dict.fromkeys(k for r in rows for k in r["outputs"]))
        records = []
        for r in rows:
            record: dict[str, Any] = {"point": r["point"], "run": r["run"], "state": r["state"]}
            record.update({p: r["parameters"].get(p) for p in params})
            for o in outputs:
                stats = r["outputs"].get(o) or {}
                lo, hi = stats.get("ci95") or (None, None)
                record.update({f"{o}_mean": stats.get("mean"), f"{o}_sem": stats.get("sem"),
                               f"{o}_ci95_lo": lo, f"{o}_ci95_hi": hi})  # fmt: skip
            records.append(record)
        return pd.DataFrame.from_records(records)

    def report(self, path: str | Path, pdf: bool = False) -> Path:
        """Write the experiment's report (``ancho experiment report``) to ``path``."""
        from .experiment_report import build_experiment_report
        from .report import check_output_path, find_chromium, save_report

        target = check_output_path(path)
        chromium = find_chromium() if pdf else None
        save_report(build_experiment_report(self.info()), target, pdf=pdf, chromium=chromium)
        return target


class Client:
    """An Ancho server, as the user whose token it holds."""

    def __init__(self, url: str, token: str | None) -> None:
        from .client import Client as Rest

        self._rest = Rest(url.rstrip("/"), token)
        self._backend = ServerBackend(self._rest)

    def __repr__(self) -> str:
        return f"<ancho.Client {self._rest.server}>"

    @property
    def url(self) -> str:
        return self._rest.server

    def upload(self, model: str | Path) -> str:
        """Pack a model folder (or take a tarball) and upload it; its ``source``."""
        return self._rest.upload_model(Path(model))

    def submit(self, model: str | Path | Mapping[str, Any], *,
               sweep: Mapping[str, Any] | None = None, **overrides: Any) -> Any:  # fmt: skip
        """Submit a run (``ancho.run``'s arguments) and return its :class:`Run`; with a
        ``sweep`` (``{"grid": …}``, as in a spec), or a spec that has one, submit an
        experiment and return its :class:`Experiment`. A local model is uploaded first."""
        from .client import REMOTE_SOURCES

        spec = _spec(model, sweep=sweep, **overrides)
        data = spec.to_dict()
        if not spec.model.source.startswith(REMOTE_SOURCES):
            data["model"]["source"] = self.upload(spec.model.source.removeprefix("file://"))
        if spec.sweep is not None:
            return Experiment(self._backend, str(self._rest.submit_experiment(data)["id"]))
        return Run(self._backend, str(self._rest.submit(data)["id"]))

    def runs(self) -> list[Run]:
        """Your runs, newest first."""
        return [Run(self._backend, str(doc["id"])) for doc in self._backend.runs()]

    def run(self, run_id: str) -> Run:
        """One of your runs (AnchoError if there is no such run of yours)."""
        self._backend.run(run_id)
        return Run(self._backend, run_id)


def connect(url: str | None = None, token: str | None = None) -> Client:
    """A :class:`Client` of the server at ``url``; the defaults are the CLI's:
    ``ANCHO_SERVER`` and ``ANCHO_TOKEN``, else ``server``/``token`` in the config file."""
    from .client import Client as Rest
    from .client import server_url

    found = server_url(url)
    if found is None:
        raise AnchoError("no server: pass url=, set ANCHO_SERVER, or write the config file")
    return Client(found, token if token is not None else Rest.connect(found).token)


def run(
    model: str | Path | Mapping[str, Any],
    *,
    sequences: int | None = None,
    parameters: Mapping[str, Any] | None = None,
    seed: int | None = None,
    executors: int | None = None,
    targets: Mapping[str, Mapping[str, float]] | None = None,
    store: str | None = None,
    master: str | None = None,
    progress: bool = False,
) -> Run:
    """Run ``model`` on this machine (or on ``master``, e.g. ``ancho cluster``'s) and
    return the :class:`Run` once it has ended, FINISHED or not. ``store`` is a store
    URL (default ``ANCHO_STORE``, else ``./.ancho/ancho.db``)."""
    from .runner import run_local
    from .store import open_store

    spec = _spec(model, sequences=sequences, parameters=parameters, seed=seed,
                 executors=executors, targets=targets)  # fmt: skip
    if spec.sweep is not None:
        raise AnchoError('the spec has a "sweep": that is an experiment, not a run')
    opened = open_store(store)  # None: ANCHO_STORE, else ./.ancho/ancho.db
    record = run_local(spec, opened, work_dir=Path(".ancho"),
                       progress=sys.stderr if progress else None,
                       master=master or "embedded")  # fmt: skip
    return Run(StoreBackend(opened), record.id)


def sweep(
    model: str | Path | Mapping[str, Any],
    *,
    grid: Mapping[str, list[Any]] | None = None,
    points: list[Mapping[str, Any]] | None = None,
    latin_hypercube: Mapping[str, Any] | None = None,
    sequences: int | None = None,
    parameters: Mapping[str, Any] | None = None,
    seed: int | None = None,
    executors: int | None = None,
    store: str | None = None,
    master: str | None = None,
    progress: bool = False,
) -> Experiment:
    """Run every point of a sweep on this machine, as ``ancho run SWEEP.json`` does, and
    return the :class:`Experiment` once all have ended. Give exactly one of ``grid``
    (``{"strike": [90, 100]}``), ``points`` (``[{"strike": 90}, …]``) or
    ``latin_hypercube`` (``{"points": 20, "ranges": {"sigma": [0.1, 0.4]}}``)."""
    from .experiments import new_experiment, store_experiment
    from .runner import require_extras, run_all
    from .store import open_store

    spec = _spec(model, sequences=sequences, parameters=parameters, seed=seed,
                 executors=executors, sweep=_sweep(grid, points, latin_hypercube))  # fmt: skip
    require_extras(spec)
    opened = open_store(store)
    experiment, runs = new_experiment(spec)
    store_experiment(opened, experiment, runs)
    run_all(spec, opened, experiment.runs, work_dir=Path(".ancho"),
            progress=sys.stderr if progress else None, master=master or "embedded")  # fmt: skip
    return Experiment(StoreBackend(opened), experiment.id)


def compare(a: Run, b: Run, output: str | None = None) -> Any:
    """``ancho compare``: ``a``'s mean minus ``b``'s with its 95% interval, paired over
    the sequence index when both have the same seed and sequence count, else Welch.
    Returns a :class:`~ancho.comparison.Comparison` (``.to_dict()`` is the contract's)."""
    from .comparison import compare_runs

    return compare_runs(a.info(), b.info(), a._backend.rows(a.id), b._backend.rows(b.id),
                        output)  # fmt: skip


def _spec(model: str | Path | Mapping[str, Any], *, sequences: int | None = None,
          parameters: Mapping[str, Any] | None = None, seed: int | None = None,
          executors: int | None = None,
          targets: Mapping[str, Mapping[str, float]] | None = None,
          sweep: Mapping[str, Any] | None = None) -> RunSpec:  # fmt: skip
    """The spec of a model folder, spec file or spec dict, with the keyword values
    (``targets`` and ``sweep`` replace the spec's)."""
    overrides = Overrides(sequences, seed, dict(parameters or {}), executors)
    extra: dict[str, Any] = {}
    if targets is not None:
        extra["targets"] = {k: dict(v) for k, v in targets.items()}
    if sweep is not None:
        extra["sweep"] = dict(sweep)
    if isinstance(model, Mapping):
        data = {**model, **extra}
        return spec_from_data(data, base=Path.cwd(), overrides=overrides, where="spec")
    if not isinstance(model, str | Path):
        raise AnchoError(f"model: expected a model folder, a spec file or a spec dict, not"
                         f" {type(model).__name__}")  # fmt: skip
    spec = load_spec(model, overrides)
    if not extra:
        return spec
    return spec_from_data({**spec.to_dict(), **extra}, overrides=None, where=str(model))


def _sweep(grid: Mapping[str, Any] | None, points: list[Mapping[str, Any]] | None,
           latin_hypercube: Mapping[str, Any] | None) -> dict[str, Any]:  # fmt: skip
    """The spec's ``"sweep"`` from exactly one of the three ways to give one."""
    given: dict[str, Any] = {}
    if grid is not None:
        given["grid"] = dict(grid)
    if points is not None:
        given["points"] = [dict(p) for p in points]
    if latin_hypercube is not None:
        given["latin_hypercube"] = dict(latin_hypercube)
    if len(given) != 1:
        raise AnchoError("sweep: give exactly one of grid=, points= or latin_hypercube=")
    return given

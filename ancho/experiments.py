"""Experiments: a spec with a ``"sweep"`` becomes one run per point (DESIGN.md).

Every run of an experiment is an ordinary run: its spec is the sweep spec without the
sweep, its ``parameters`` updated by its point, its seed the spec's (common random
numbers), its name the spec's with the point's index (``option[3]``). The experiment
record keeps the sweep spec, the points and the run ids, in the sweep's order.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from .output import summary_document
from .partials import Z95
from .runner import new_run
from .spec import RunSpec
from .store import TERMINAL_STATES, ExperimentRecord, RunRecord, Store
from .sweep_points import expand_sweep

__all__ = [
    "experiment_document",
    "experiment_state",
    "new_experiment",
    "point_specs",
    "store_experiment",
]

#: Longest run name the schema allows.
MAX_NAME = 128


def point_specs(spec: RunSpec) -> list[tuple[dict[str, Any], RunSpec]]:
    """Each point of ``spec``'s sweep with its run's spec (SpecError for a bad sweep)."""
    if spec.sweep is None:
        raise ValueError("not a sweep spec")
    points = expand_sweep(spec.sweep, spec.parameters)
    pairs = []
    for i, point in enumerate(points):
        parameters = {**spec.parameters, **point}
        name = _point_name(spec.name, i)
        pairs.append(
            (point, dataclasses.replace(spec, parameters=parameters, sweep=None, name=name))
        )
    return pairs


def _point_name(name: str, index: int) -> str:
    suffix = f"[{index}]"
    return name[: MAX_NAME - len(suffix)] + suffix


def new_experiment(
    spec: RunSpec, owner: str = "local"
) -> tuple[ExperimentRecord, list[tuple[RunRecord, RunSpec]]]:
    """A fresh experiment for a sweep spec and its QUEUED runs, not stored yet: store
    the runs, then the experiment (:func:`store_experiment`)."""
    pairs = point_specs(spec)
    runs = [(new_run(point_spec, owner), point_spec) for _, point_spec in pairs]
    experiment = ExperimentRecord(
        id="x" + uuid.uuid4().hex[:11],
        name=spec.name,
        owner=owner,
        spec=spec.to_dict(),
        points=[point for point, _ in pairs],
        runs=[run.id for run, _ in runs],
        created_at=time.time(),
    )
    return experiment, runs


def store_experiment(
    store: Store, experiment: ExperimentRecord, runs: list[tuple[RunRecord, RunSpec]]
) -> None:
    """Store the runs, then the experiment: a listed experiment has all its runs."""
    for run, _ in runs:
        store.create_run(run)
    store.create_experiment(experiment)


def experiment_document(
    experiment: ExperimentRecord, store: Store, *, full: bool = False
) -> dict[str, Any]:
    """``--json`` of a sweep (the contract): ``{"experiment", "points": [{"parameters",
    "run", "summary"}]}``, a point's summary None until its run ends. ``full`` (the
    API, ``ancho experiment status``) adds the name, creation time and the state of the
    experiment (:func:`experiment_state`) and of each point's run."""
    points: list[dict[str, Any]] = []
    states: list[str] = []
    for parameters, run_id in zip(experiment.points, experiment.runs, strict=True):
        run = store.get_run(run_id)
        states.append(run.state)
        summary = summary_document(run, store.get_summary(run_id)) if run.done else None
        point: dict[str, Any] = {"parameters": parameters, "run": run_id, "summary": summary}
        if full:
            point["state"] = run.state
        points.append(point)
    if not full:
        return {"experiment": experiment.id, "points": points}
    return {
        "experiment": experiment.id,
        "name": experiment.name,
        "created_at": experiment.created_at,
        "state": experiment_state(states),
        "points": points,
    }


def experiment_state(states: list[str]) -> str:
    """QUEUED while every run is; RUNNING while any has not ended; then FINISHED when
    every run finished, else FAILED if one failed, else KILLED."""
    if all(s == "QUEUED" for s in states):
        return "QUEUED"
    if any(s not in TERMINAL_STATES for s in states):
        return "RUNNING"
    if all(s == "FINISHED" for s in states):
        return "FINISHED"
    return "FAILED" if "FAILED" in states else "KILLED"


def point_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """``ancho experiment results``: one row per point of an experiment document, in the
    sweep's order: ``{"point", "run", "state", "parameters", "outputs": {name: {"mean",
    "sem", "ci95": [lo, hi]}}}`` (outputs empty until the point's run has a summary)."""
    rows = []
    for i, point in enumerate(doc["points"]):
        outputs: dict[str, Any] = {}
        for name, stats in ((point.get("summary") or {}).get("outputs") or {}).items():
            mean, sem = stats.get("mean"), stats.get("sem")
            ci95 = None if mean is None or sem is None else [mean - Z95 * sem, mean + Z95 * sem]
            outputs[name] = {"mean": mean, "sem": sem, "ci95": ci95}
        state = point.get("state") or (point.get("summary") or {}).get("state", "")
        rows.append({"point": i, "run": point["run"], "state": state,
                     "parameters": point["parameters"], "outputs": outputs})  # fmt: skip
    return rows


def _names(rows: list[dict[str, Any]], key: str) -> list[str]:
    return list(dict.fromkeys(name for row in rows for name in row[key]))


def point_csv_lines(rows: list[dict[str, Any]]) -> Iterator[str]:
    """The point rows as CSV: ``point,run,state,<parameters…>,<output>_mean,
    <output>_sem,<output>_ci95_lo,<output>_ci95_hi…`` (floats exactly, as repr)."""
    params, outputs = _names(rows, "parameters"), _names(rows, "outputs")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    stats = [f"{o}_{s}" for o in outputs for s in ("mean", "sem", "ci95_lo", "ci95_hi")]
    writer.writerow(["point", "run", "state", *params, *stats])
    for row in rows:
        cells: list[Any] = [row["point"], row["run"], row["state"]]
        cells += [_cell(row["parameters"].get(p)) for p in params]
        for o in outputs:
            s = row["outputs"].get(o) or {}
            lo, hi = s.get("ci95") or (None, None)
            cells += [_cell(s.get("mean")), _cell(s.get("sem")), _cell(lo), _cell(hi)]
        writer.writerow(cells)
    yield buf.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return value if isinstance(value, str) else json.dumps(value)


def experiment_table(doc: dict[str, Any]) -> str:
    """For people: one row per point, its parameters, then each output's mean ± 95%
    half-width (``ancho run SWEEP.json`` and ``ancho submit SWEEP.json --wait``)."""
    rows = point_rows(doc)
    params, outputs = _names(rows, "parameters"), _names(rows, "outputs")
    head = ["point", *params, *outputs, "state"]
    body = []
    for row in rows:
        cells = [str(row["point"])]
        cells += [_short(row["parameters"].get(p)) for p in params]
        for o in outputs:
            s = row["outputs"].get(o)
            if not s or s["mean"] is None:
                cells.append("-")
            elif s["ci95"] is None:
                cells.append(f"{s['mean']:.6g}")
            else:
                cells.append(f"{s['mean']:.6g} ± {(s['ci95'][1] - s['ci95'][0]) / 2:.2g}")
        cells.append(row["state"])
        body.append(cells)
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [head, *body]]  # fmt: skip
    return f"experiment {doc['experiment']}\n" + "\n".join(lines)


def _short(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return value if isinstance(value, str) else json.dumps(value)

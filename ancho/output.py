"""What the CLI (and later the API) prints: summary JSON and table, results as JSONL/CSV."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Iterator
from typing import Any

from .results import OutputValue, SequenceResult
from .store import RunRecord, Store

QUANTILE_COLUMNS = ("0.05", "0.5", "0.95")


def run_document(run: RunRecord, store: Store) -> dict[str, Any]:
    """``ancho status`` and ``GET /api/v1/runs/{id}``: the run's state and counts, and
    while it is RUNNING its live statistics (DESIGN.md, ``"live"``) when some are in."""
    doc = run.to_dict()
    if run.state == "RUNNING":
        live = (store.get_live(run.id) or {}).get("live")
        if live:
            doc["live"] = live
    return doc


def summary_document(run: RunRecord, summary: dict[str, Any] | None) -> dict[str, Any]:
    """The contract's summary JSON: run facts, per-output statistics, custom results."""
    summary = summary or {}
    doc = {
        "run": run.id,
        "state": run.state,
        "seed": run.seed,
        "sequences": run.sequences,
        "ok": run.ok,
        "failed": run.failed,
        "outputs": summary.get("outputs", {}),
        "custom": summary.get("custom", {}),
    }
    for key in ("targets_met", "stopped"):  # runs with precision targets
        if key in summary:
            doc[key] = summary[key]
    return doc


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def summary_table(doc: dict[str, Any]) -> str:
    """A fixed-width table of the summary for people."""
    head = (
        f"run {doc['run']}  {doc['state']}  seed {doc['seed']}  "
        f"{doc['ok']:,} ok, {doc['failed']:,} failed of {doc['sequences']:,}"
    )
    cols = ["output", "count", "mean", "stddev", "sem", "min", "max", "skewness", "kurtosis"]
    cols += [f"q{q}" for q in QUANTILE_COLUMNS]
    rows = []
    for name, stats in doc["outputs"].items():
        quantiles = stats.get("quantiles") or {}
        rows.append(
            [name]
            + [_num(stats.get(c)) for c in cols[1:9]]
            + [_num(quantiles.get(q)) for q in QUANTILE_COLUMNS]
        )
    widths = [
        max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)
    ]
    lines = [head]
    if doc.get("stopped"):
        stop = doc["stopped"]
        lines.append(f"stopped after {stop['sequences']:,} sequences: {stop['reason']}")
    elif doc.get("targets_met") is False:
        lines.append(f"targets not met within {doc['sequences']:,} sequences")
    lines += [""]
    lines.append(
        "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(cols, widths, strict=True))
        )
    )
    for r in rows:
        lines.append(
            "  ".join(
                v.rjust(w) if i else v.ljust(w)
                for i, (v, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    if doc.get("custom"):
        lines += ["", "custom: " + json.dumps(doc["custom"], sort_keys=True)]
    return "\n".join(lines)


def _json_value(value: OutputValue) -> Any:
    # Strict JSON has no NaN/Infinity: non-finite outputs are written as strings
    # ("nan", "inf", "-inf") so any JSON parser reads the file.
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def _csv_value(value: OutputValue | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def iter_lines(results: Iterable[SequenceResult]) -> Iterator[str]:
    """JSON lines as strings (for streaming responses)."""
    for r in results:
        doc = r.to_dict()
        doc["outputs"] = {k: _json_value(v) for k, v in r.outputs.items()}
        yield json.dumps(doc, allow_nan=False) + "\n"


def csv_lines(results: Iterable[SequenceResult], outputs: list[str]) -> Iterator[str]:
    """The CSV header, then one line per sequence (for files and streaming responses)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["sequence", "status", *outputs])
    yield buf.getvalue()
    for r in results:
        buf.seek(0)
        buf.truncate()
        writer.writerow([r.sequence, r.status, *(_csv_value(r.outputs.get(k)) for k in outputs)])
        yield buf.getvalue()

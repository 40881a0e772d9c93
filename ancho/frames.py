"""A run's results and summary as columns: pandas DataFrames and Arrow tables
(``Run.results()``, ``Run.to_arrow()``, ``Run.summary_frame()``; the ``notebook`` extra).

Results are streamed: rows are gathered :data:`CHUNK` at a time into Python lists, each
chunk becomes one numpy array per column, and the chunks are joined at the end, so the
peak is about twice the columns' own size plus one chunk of Python objects. The frame
takes the joined arrays without a copy. Columns: ``sequence`` (int64), ``status``
(``ok``/``failed``: a category, kept as int8 codes, not a string per row), then one per
output. An output column is bool when every value is
a bool, int64 when every value is an int, float64 when every value is a number (NaN
where a sequence has none: failed ones), else object. The JSON of a server's results
spells non-finite floats ``"nan"``, ``"inf"`` and ``"-inf"``; they are floats again here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from .extras import require

__all__ = ["CHUNK", "result_columns", "results_frame", "results_table", "summary_frame"]

CHUNK = 65_536
#: The status column's categories, in the order of its codes.
STATUSES = ("ok", "failed")
STATS = ("count", "mean", "stddev", "sem", "min", "max", "skewness", "kurtosis")
NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "infinity": math.inf,
              "-infinity": -math.inf}  # fmt: skip
Row = tuple[int, str, Mapping[str, Any]]


def _column(values: list[Any]) -> npt.NDArray[Any]:
    """One chunk of a column as the narrowest array that holds it exactly."""
    if values and all(type(v) is bool for v in values):
        return np.array(values, dtype=np.bool_)
    if values and all(type(v) is int for v in values):
        try:
            return np.array(values, dtype=np.int64)
        except OverflowError:
            return np.array(values, dtype=object)
    floats = [_float(v) for v in values]
    if all(f is not None for f in floats):
        return np.array(floats, dtype=np.float64)
    return np.array(values, dtype=object)


def _float(value: Any) -> float | None:
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return NON_FINITE.get(value.lower())
    return None


def _join(chunks: list[npt.NDArray[Any]]) -> npt.NDArray[Any]:
    if not chunks:
        return np.array([], dtype=np.float64)
    kinds = {c.dtype.kind for c in chunks}
    if len(kinds) > 1 and kinds <= {"b", "i", "f"} and "f" in kinds:
        return np.concatenate([c.astype(np.float64) for c in chunks])
    if len(kinds) > 1 and not kinds <= {"i", "f"}:
        return np.concatenate([c.astype(object) for c in chunks])
    return np.concatenate(chunks)


def result_columns(rows: Iterable[Row], outputs: list[str],
                   columns: list[str] | None = None) -> dict[str, npt.NDArray[Any]]:  # fmt: skip
    """``{"sequence", "status", <output>…}`` as arrays, from rows in sequence order;
    ``columns`` picks outputs (unknown names are an error, by the caller)."""
    names = list(columns) if columns is not None else list(outputs)
    done: dict[str, list[npt.NDArray[Any]]] = {n: [] for n in ["sequence", "status", *names]}
    sequences: list[int] = []
    statuses: list[int] = []
    values: dict[str, list[Any]] = {n: [] for n in names}

    def flush() -> None:
        done["sequence"].append(np.array(sequences, dtype=np.int64))
        done["status"].append(np.array(statuses, dtype=np.int8))
        for n in names:
            done[n].append(_column(values[n]))
            values[n].clear()
        sequences.clear()
        statuses.clear()

    for sequence, status, out in rows:
        sequences.append(sequence)
        statuses.append(0 if status == "ok" else 1)
        for n in names:
            values[n].append(out.get(n))
        if len(sequences) == CHUNK:
            flush()
    if sequences or not done["sequence"]:
        flush()
    return {n: _join(chunks) for n, chunks in done.items()}


def results_frame(columns: dict[str, npt.NDArray[Any]]) -> Any:
    """The columns as a pandas DataFrame (no copy of the arrays)."""
    require("notebook", "Run.results()")
    import pandas as pd

    data: dict[str, Any] = dict(columns)
    data["status"] = pd.Categorical.from_codes(columns["status"], categories=list(STATUSES))
    return pd.DataFrame(data, copy=False)


def results_table(columns: dict[str, npt.NDArray[Any]]) -> Any:
    """The columns as a pyarrow Table."""
    require("notebook", "Run.to_arrow()")
    import pyarrow as pa

    arrays = {}
    for name, array in columns.items():
        if name == "status":
            arrays[name] = pa.DictionaryArray.from_arrays(pa.array(array), list(STATUSES))
        elif array.dtype == object:
            arrays[name] = pa.array(array.tolist(), from_pandas=True)
        else:
            arrays[name] = pa.array(array)
    return pa.table(arrays)


def summary_frame(summary: Mapping[str, Any]) -> Any:
    """One row per output, one column per statistic, then ``ci95_lo``/``ci95_hi`` and
    the quantiles (``q0.01`` … ``q0.99``), as ``ancho summary --format table``."""
    require("notebook", "Run.summary_frame()")
    import pandas as pd

    rows = {}
    for name, stats in (summary.get("outputs") or {}).items():
        row = {k: stats.get(k) for k in STATS}
        lo, hi = stats.get("ci95") or (None, None)
        row.update(ci95_lo=lo, ci95_hi=hi)
        row.update({f"q{q}": v for q, v in (stats.get("quantiles") or {}).items()})
        rows[name] = row
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "output"
    return frame

"""The summary job: per-output statistics of a run's ok sequences, and the custom summary.

The input is the Parquet file written by :mod:`ancho.parquet` (``sequence``, ``status``,
one column per output, ``error``); only rows with ``status == "ok"`` count. The result is
the ``outputs`` and ``custom`` parts of the summary JSON (DESIGN.md, "Stored results and
summary")::

    {"outputs": {name: {"count", "mean", "stddev", "sem", "min", "max", "skewness",
                        "kurtosis", "quantiles": {"0.01": …, …, "0.99": …}}},
     "custom": {...}}

How each number is computed, over the output cast to double (bools are 0/1):

- ``mean``, ``min``, ``max`` and the variance come from MLlib's ``Summarizer`` over one
  vector of all outputs. Its variance is the unbiased sample variance, so
  ``stddev = sqrt(variance)`` is the sample standard deviation and
  ``sem = stddev / sqrt(count)``; both are null when ``count < 2``.
- ``count``, ``skewness`` and ``kurtosis`` are Spark SQL's ``count``, ``skewness``
  (population g1) and ``kurtosis`` (population excess g2); both are null when the
  variance is 0.
- ``quantiles`` are Spark SQL's ``percentile_approx`` at ``accuracy``: each is a value of
  the data whose rank is within ``count / accuracy`` of the exact one (so exact for runs
  of up to ``accuracy`` ok sequences). The default, 100,000, is chosen for memory: the
  sketch of each output holds up to about ``min(count, accuracy)`` values, in every
  partial aggregate and in the driver's merge, at tens of bytes per value. The sketches
  dominate the job's time: for a million rows and 3 outputs on 2 cores, accuracy 10,000
  / 100,000 / 1,000,000 took about 0.6 / 1 / 1.5 times the default's time.
- Two Spark jobs over the file: one aggregate for all the SQL statistics of all outputs,
  one for ``Summarizer`` (skipped when there is no ok row, where it would fail).

Non-finite values. Statistics are what Spark computes with IEEE arithmetic: a NaN output
makes ``mean``, ``stddev``, ``sem``, ``skewness`` and ``kurtosis`` NaN, an infinite one
makes them infinite or NaN; ``Summarizer``'s ``min``/``max`` skip NaN; Spark orders NaN
above +inf in quantiles. The summary must parse with strict JSON parsers, which have no
NaN or Infinity, so every non-finite statistic is reported as ``null``. ``null`` therefore
means "no finite value": no data, too little data (``count < 2``), or non-finite data.
An ok row with no value for an output (not produced by a valid store) is not counted but
poisons ``mean``/``stddev`` like a NaN, which keeps such a store bug visible.

Custom summaries. ``custom(df, params)`` gets the ok rows with ``sequence`` and the outputs
in their stored types and returns a JSON-serialisable mapping, which becomes ``custom``
(numpy scalars become Python numbers, non-finite floats become null). If it raises or
returns something else, the run still gets its built-in summary: ``custom`` is then
``{"error": "Type: message"}`` and the traceback is logged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.errors import AnalysisException
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.stat import Summarizer
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from .partials import DEFAULT_ACCURACY, QUANTILES

__all__ = [
    "DEFAULT_ACCURACY",
    "QUANTILES",
    "CustomSummary",
    "SummaryError",
    "compute_summary",
]

log = logging.getLogger(__name__)


CustomSummary = Callable[[DataFrame, dict[str, Any]], Mapping[str, Any]]

_VECTOR = "_ancho_vector"


class SummaryError(Exception):
    """The summary could not be computed (unreadable results file, Spark failure)."""

    def __init__(self, message: str, *, kind: str = "SummaryError") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind

    def format_message(self) -> str:
        """One line for users: ``"Kind: message"``."""
        return f"{self.kind}: {self.message}"


def compute_summary(
    spark: SparkSession,
    parquet_path: str | Path | DataFrame,
    outputs: Sequence[str],
    *,
    params: Mapping[str, Any] | None = None,
    custom: CustomSummary | None = None,
    accuracy: int = DEFAULT_ACCURACY,
) -> dict[str, Any]:
    """Summarise the ok rows of the results file at ``parquet_path`` (or of a DataFrame
    with the same columns).

    ``outputs`` names the outputs to summarise, in the order they appear in the summary;
    one missing from the file (no ok sequence produced it) gets ``count`` 0 and nulls.
    ``custom`` is the model's ``summarize(df, params)``, called with ``params``.
    Returns ``{"outputs": {...}, "custom": {...}}`` as described in the module docstring.
    Raises :class:`SummaryError` if the file cannot be read or the Spark job fails.
    """
    if isinstance(parquet_path, DataFrame):  # e.g. read from Cassandra by the connector
        df = parquet_path
    else:
        try:
            df = spark.read.parquet(str(parquet_path))
        except AnalysisException as exc:
            raise SummaryError(f"cannot read results file {parquet_path}: {exc}") from exc
    if "status" in df.columns:
        df = df.filter(F.col("status") == "ok")

    try:
        stats = _builtin_statistics(df, outputs, accuracy)
    except Exception as exc:
        raise SummaryError(f"summary job failed: {exc}", kind=type(exc).__name__) from exc

    custom_result: dict[str, Any] = {}
    if custom is not None:
        custom_result = _run_custom(custom, df, outputs, dict(params or {}))
    return {"outputs": stats, "custom": custom_result}


def _builtin_statistics(
    df: DataFrame, outputs: Sequence[str], accuracy: int
) -> dict[str, dict[str, Any]]:
    if not outputs:
        return {}
    # Positional aliases: output names are identifiers per the contract, but positions keep
    # Spark's column resolution out of the question.
    aliases = [f"_o{i}" for i in range(len(outputs))]
    values = df.select(
        *(_as_double(df, name).alias(a) for name, a in zip(outputs, aliases, strict=True))
    )

    probabilities = F.array(*(F.lit(q) for q in QUANTILES))
    aggregates: list[Column] = [F.count(F.lit(1)).alias("_rows")]
    for a in aliases:
        aggregates += [
            F.count(a).alias(f"{a}_count"),
            F.skewness(a).alias(f"{a}_skewness"),
            F.kurtosis(a).alias(f"{a}_kurtosis"),
            F.percentile_approx(a, probabilities, accuracy).alias(f"{a}_quantiles"),
        ]
    # collect(), not first(): first() adds a limit that made this aggregate slower.
    (row,) = values.select(*aggregates).collect()

    # Summarizer fails the whole job when it has seen no row ("Nothing has been added to
    # this summarizer"), so it gets its own pass, run only when there are ok rows. That
    # second scan took about 0.6 s per million rows of 3 outputs on 2 cores.
    nothing = np.full(len(outputs), np.nan)
    means, variances, minima, maxima = nothing, nothing, nothing, nothing
    if row["_rows"] > 0:
        # handleInvalid="keep": a null becomes NaN in the vector instead of failing the job.
        assembler = VectorAssembler(inputCols=aliases, outputCol=_VECTOR, handleInvalid="keep")
        metrics = Summarizer.metrics("mean", "variance", "min", "max")
        (vector_row,) = (
            assembler.transform(values).select(metrics.summary(F.col(_VECTOR))).collect()
        )
        vector_stats = vector_row[0]
        means, variances = vector_stats["mean"].toArray(), vector_stats["variance"].toArray()
        minima, maxima = vector_stats["min"].toArray(), vector_stats["max"].toArray()

    result: dict[str, dict[str, Any]] = {}
    for i, (name, a) in enumerate(zip(outputs, aliases, strict=True)):
        count = int(row[f"{a}_count"])
        quantiles = row[f"{a}_quantiles"] or [None] * len(QUANTILES)
        if count == 0:
            result[name] = _empty(count)
            continue
        stddev = _finite(math.sqrt(max(float(variances[i]), 0.0))) if count >= 2 else None
        result[name] = {
            "count": count,
            "mean": _finite(means[i]),
            "stddev": stddev,
            "sem": None if stddev is None else stddev / math.sqrt(count),
            "min": _finite(minima[i]),
            "max": _finite(maxima[i]),
            "skewness": _finite(row[f"{a}_skewness"]),
            "kurtosis": _finite(row[f"{a}_kurtosis"]),
            "quantiles": {str(q): _finite(v) for q, v in zip(QUANTILES, quantiles, strict=True)},
        }
    return result


def _as_double(df: DataFrame, name: str) -> Column:
    if name in df.columns:
        return F.col(f"`{name}`").cast("double")
    return F.lit(None).cast("double")


def _empty(count: int) -> dict[str, Any]:
    return {
        "count": count,
        "mean": None,
        "stddev": None,
        "sem": None,
        "min": None,
        "max": None,
        "skewness": None,
        "kurtosis": None,
        "quantiles": {str(q): None for q in QUANTILES},
    }


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _run_custom(
    custom: CustomSummary, df: DataFrame, outputs: Sequence[str], params: dict[str, Any]
) -> dict[str, Any]:
    columns = [F.col("sequence")] + [
        F.col(f"`{name}`") if name in df.columns else F.lit(None).cast("double").alias(name)
        for name in outputs
    ]
    try:
        returned = custom(df.select(*columns), params)
        if not isinstance(returned, Mapping):
            raise TypeError(f"custom summary must return a dict, not {type(returned).__name__}")
        return {str(key): _jsonable(value) for key, value in returned.items()}
    except Exception as exc:
        log.warning("custom summary failed; keeping the built-in summary", exc_info=True)
        return {"error": f"{type(exc).__name__}: {exc}"}


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON types; raises TypeError for anything JSON cannot hold."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    raise TypeError(f"custom summary value {value!r} ({type(value).__name__}) is not JSON")

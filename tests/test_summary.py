"""The summary job against numpy, on a real local Spark session and real Parquet files."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pyspark.sql import DataFrame, SparkSession

from ancho.parquet import write_results_parquet
from ancho.results import SequenceResult
from ancho.spark import spark_session, stop_spark
from ancho.summary import QUANTILES, SummaryError, compute_summary

N = 20_000


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    # Starting Spark costs seconds: one session for every test here.
    session = spark_session("local[2]")
    yield session
    stop_spark()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """N sequences, every 40th failed, with a float, an int and a bool output."""
    rng = np.random.default_rng(7)
    x = rng.gamma(2.0, 3.0, size=N)
    k = rng.poisson(4.0, size=N)
    hit = rng.random(N) < 0.3
    failed = np.arange(N) % 40 == 3
    results = [
        SequenceResult(i, "failed", {}, {"type": "RuntimeError", "message": "no", "traceback": ""})
        if failed[i]
        else SequenceResult(i, "ok", {"x": float(x[i]), "k": int(k[i]), "hit": bool(hit[i])})
        for i in range(N)
    ]
    path = tmp_path_factory.mktemp("summary") / "results.parquet"
    write_results_parquet(results, path, chunk_rows=4096)
    keep = ~failed
    return path, {"x": x[keep], "k": k[keep].astype(float), "hit": hit[keep].astype(float)}


def write(tmp_path: Path, columns: Mapping[str, Sequence[float]]) -> Path:
    length = len(next(iter(columns.values())))
    results = [
        SequenceResult(i, "ok", {name: values[i] for name, values in columns.items()})
        for i in range(length)
    ]
    path = tmp_path / "results.parquet"
    write_results_parquet(results, path)
    return path


def moments(values: np.ndarray) -> tuple[float, float]:
    """Population skewness g1 and excess kurtosis g2, as Spark SQL defines them."""
    centred = values - values.mean()
    m2, m3, m4 = (np.mean(centred**p) for p in (2, 3, 4))
    return float(m3 / m2**1.5), float(m4 / m2**2 - 3.0)


def assert_quantile(values: np.ndarray, q: float, got: float, rank_tolerance: float) -> None:
    """``got`` is a data value whose rank is within ``rank_tolerance`` of ``q * n``."""
    ordered = np.sort(values)
    assert got in set(ordered.tolist())
    lowest = np.searchsorted(ordered, got, side="left") + 1  # 1-based ranks `got` occupies
    highest = np.searchsorted(ordered, got, side="right")
    target = q * len(ordered)
    assert lowest - rank_tolerance <= target <= highest + rank_tolerance, (q, got, target)


def test_statistics_match_numpy(
    spark: SparkSession, dataset: tuple[Path, dict[str, np.ndarray]]
) -> None:
    path, columns = dataset

    summary = compute_summary(spark, path, ["x", "k", "hit"])

    assert list(summary["outputs"]) == ["x", "k", "hit"]
    assert summary["custom"] == {}
    json.dumps(summary, allow_nan=False)
    for name, values in columns.items():
        stats = summary["outputs"][name]
        skewness, kurtosis = moments(values)
        stddev = float(np.std(values, ddof=1))
        assert stats["count"] == len(values) == N - N // 40
        assert stats["mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert stats["stddev"] == pytest.approx(stddev, rel=1e-10)
        assert stats["sem"] == pytest.approx(stddev / math.sqrt(len(values)), rel=1e-10)
        assert stats["min"] == values.min()
        assert stats["max"] == values.max()
        assert stats["skewness"] == pytest.approx(skewness, rel=1e-8)
        assert stats["kurtosis"] == pytest.approx(kurtosis, rel=1e-8)
        assert list(stats["quantiles"]) == ["0.01", "0.05", "0.25", "0.5", "0.75", "0.95", "0.99"]
        # Fewer rows than the accuracy: the quantiles are the exact order statistics.
        exact = np.quantile(values, QUANTILES, method="inverted_cdf")
        assert list(stats["quantiles"].values()) == exact.tolist()


def test_bools_count_as_zero_and_one(
    spark: SparkSession, dataset: tuple[Path, dict[str, np.ndarray]]
) -> None:
    path, columns = dataset
    stats = compute_summary(spark, path, ["hit"])["outputs"]["hit"]
    assert stats["min"] == 0.0
    assert stats["max"] == 1.0
    assert stats["mean"] == pytest.approx(columns["hit"].mean(), rel=1e-12)


def test_approximate_quantiles_stay_within_the_rank_error(
    spark: SparkSession, dataset: tuple[Path, dict[str, np.ndarray]]
) -> None:
    path, columns = dataset
    accuracy = 100

    stats = compute_summary(spark, path, ["x"], accuracy=accuracy)["outputs"]["x"]

    values = columns["x"]
    for q in QUANTILES:
        assert_quantile(values, q, stats["quantiles"][str(q)], len(values) / accuracy)


def test_no_ok_rows_give_count_zero_and_nulls(spark: SparkSession, tmp_path: Path) -> None:
    path = tmp_path / "results.parquet"
    error = {"type": "ValueError", "message": "bad", "traceback": ""}
    results = [SequenceResult(i, "failed", {}, error) for i in range(5)]
    # Typed columns (as the store knows them) and a file that has never seen the outputs.
    write_results_parquet(results, path, output_types={"x": "float"})
    bare = tmp_path / "bare.parquet"
    write_results_parquet(results, bare)

    for file in (path, bare):
        stats = compute_summary(spark, file, ["x"])["outputs"]["x"]
        assert stats == {
            "count": 0,
            "mean": None,
            "stddev": None,
            "sem": None,
            "min": None,
            "max": None,
            "skewness": None,
            "kurtosis": None,
            "quantiles": {str(q): None for q in QUANTILES},
        }


def test_one_row_has_no_spread(spark: SparkSession, tmp_path: Path) -> None:
    stats = compute_summary(spark, write(tmp_path, {"x": [2.5]}), ["x"])["outputs"]["x"]
    assert stats == {
        "count": 1,
        "mean": 2.5,
        "stddev": None,
        "sem": None,
        "min": 2.5,
        "max": 2.5,
        "skewness": None,
        "kurtosis": None,
        "quantiles": {str(q): 2.5 for q in QUANTILES},
    }


def test_a_constant_output_has_zero_stddev_and_no_shape(
    spark: SparkSession, tmp_path: Path
) -> None:
    stats = compute_summary(spark, write(tmp_path, {"x": [3] * 10}), ["x"])["outputs"]["x"]
    assert (stats["count"], stats["mean"], stats["stddev"], stats["sem"]) == (10, 3.0, 0.0, 0.0)
    assert (stats["skewness"], stats["kurtosis"]) == (None, None)


def test_non_finite_values_become_null_and_keep_json_strict(
    spark: SparkSession, tmp_path: Path
) -> None:
    finite = [float(v) for v in range(1, 200)]
    path = write(
        tmp_path,
        {"with_nan": [*finite, math.nan], "with_inf": [*finite, math.inf], "clean": [*finite, 0.0]},
    )

    summary = compute_summary(spark, path, ["with_nan", "with_inf", "clean"])

    json.loads(json.dumps(summary, allow_nan=False))
    nan, inf = summary["outputs"]["with_nan"], summary["outputs"]["with_inf"]
    assert nan["count"] == inf["count"] == 200
    for stats in (nan, inf):
        assert stats["mean"] is stats["stddev"] is stats["sem"] is None
        assert stats["skewness"] is stats["kurtosis"] is None
        assert stats["min"] == 1.0
        assert stats["quantiles"]["0.5"] == 100.0
    # Summarizer's max skips NaN; an infinite max has no JSON number.
    assert nan["max"] == 199.0
    assert inf["max"] is None
    assert summary["outputs"]["clean"]["mean"] == pytest.approx(sum(finite) / 200)


def test_custom_summary_sees_ok_rows_with_stored_types(
    spark: SparkSession, dataset: tuple[Path, dict[str, np.ndarray]]
) -> None:
    path, columns = dataset
    seen: dict[str, Any] = {}

    def summarize(df: DataFrame, params: dict[str, Any]) -> dict[str, Any]:
        seen["columns"] = df.dtypes
        seen["params"] = params
        threshold = params["threshold"]
        above = df.filter(df.x > threshold).count()
        return {
            "above": above,
            "share": np.float64(above / df.count()),
            "nothing": math.nan,
            "nested": {"ks": [np.int64(1), 2], "flag": np.bool_(True)},
        }

    summary = compute_summary(
        spark, path, ["x", "k", "hit"], params={"threshold": 10.0}, custom=summarize
    )

    assert seen["columns"] == [
        ("sequence", "bigint"),
        ("x", "double"),
        ("k", "bigint"),
        ("hit", "boolean"),
    ]
    assert seen["params"] == {"threshold": 10.0}
    expected_above = int((columns["x"] > 10.0).sum())
    assert summary["custom"] == {
        "above": expected_above,
        "share": expected_above / len(columns["x"]),
        "nothing": None,
        "nested": {"ks": [1, 2], "flag": True},
    }
    assert type(summary["custom"]["share"]) is float
    json.dumps(summary, allow_nan=False)
    assert summary["outputs"]["x"]["count"] == len(columns["x"])


@pytest.mark.parametrize(
    ("summarize", "error"),
    [
        (lambda df, params: 1 / 0, "ZeroDivisionError: division by zero"),
        (lambda df, params: [1, 2], "TypeError: custom summary must return a dict, not list"),
        (lambda df, params: {"df": df}, "TypeError: custom summary value"),
    ],
)
def test_a_failing_custom_summary_keeps_the_builtin_one(
    spark: SparkSession,
    dataset: tuple[Path, dict[str, np.ndarray]],
    summarize: Any,
    error: str,
) -> None:
    path, columns = dataset

    summary = compute_summary(spark, path, ["x"], custom=summarize)

    assert list(summary["custom"]) == ["error"]
    assert summary["custom"]["error"].startswith(error)
    assert summary["outputs"]["x"]["count"] == len(columns["x"])


def test_an_unreadable_file_raises_summary_error(spark: SparkSession, tmp_path: Path) -> None:
    with pytest.raises(SummaryError, match="cannot read results file"):
        compute_summary(spark, tmp_path / "missing.parquet", ["x"])


def test_no_outputs_give_an_empty_summary(
    spark: SparkSession, dataset: tuple[Path, dict[str, np.ndarray]]
) -> None:
    assert compute_summary(spark, dataset[0], []) == {"outputs": {}, "custom": {}}


def test_the_session_is_reused_and_quiet(spark: SparkSession) -> None:
    assert spark_session("local[2]") is spark
    conf = spark.sparkContext.getConf()
    assert conf.get("spark.ui.enabled") == "false"
    assert conf.get("spark.sql.catalogImplementation") == "in-memory"
    assert "tryReflectionSetAccessible" in (conf.get("spark.driver.extraJavaOptions") or "")

"""The summary merged from partials against Spark's recomputation from every stored
result (``ancho summary --recompute``): moments within 1e-9 relative, quantiles within
the contract's rank bound of the exact rank, on either side of 100,000 sequences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from e2e import MODELS, ancho, write_spec
from rank_bound import rank_error

pytestmark = pytest.mark.slow

MOMENTS = ("mean", "stddev", "sem", "min", "max", "skewness", "kurtosis")


@pytest.mark.parametrize("sequences", [30_000, 130_000])
def test_merged_and_recomputed_summaries_agree(tmp_path: Path, sequences: int) -> None:
    spec = {"model": {"source": str(MODELS / "skewed"), "entrypoint": "model:simulate"},
            "sequences": sequences, "seed": 5}  # fmt: skip
    run = ancho("run", str(write_spec(tmp_path, spec)), "--json", cwd=tmp_path, timeout=600)
    assert run.code == 0, run.stderr
    merged = run.json()
    again = ancho("summary", merged["run"], "--recompute", "--format", "json", cwd=tmp_path,
                  timeout=600)  # fmt: skip
    assert again.code == 0, again.stderr
    recomputed = again.json()
    assert ancho("summary", merged["run"], "--format", "json", cwd=tmp_path).json() == merged
    rows = ancho("results", merged["run"], "--format", "jsonl", cwd=tmp_path).jsonl()
    bound = max(1, sequences // 100_000)
    for name in ("y", "k", "b"):
        ours, spark = merged["outputs"][name], recomputed["outputs"][name]
        assert ours["count"] == spark["count"] == sequences
        for stat in MOMENTS:
            assert ours[stat] == pytest.approx(spark[stat], rel=1e-9, abs=1e-12), (name, stat)
        data = np.sort(np.array([float(r["outputs"][name]) for r in rows]))
        for q, value in ours["quantiles"].items():
            assert rank_error(data, value, float(q)) <= bound, (name, q)
            assert rank_error(data, spark["quantiles"][q], float(q)) <= bound, (name, q)
        if sequences <= 100_000:  # exact: the very same values
            assert ours["quantiles"] == spark["quantiles"]

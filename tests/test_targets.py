"""Precision targets end to end (DESIGN.md, "Precision targets"): a run stops at the
first block boundary where every target holds over the prefix, keeps exactly the
sequences before it, and stops at the same place whatever its parallelism."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from e2e import MODELS, ancho, run_id_of, write_spec

from ancho.partials import block_size

pytestmark = pytest.mark.slow

P, SEM, MAXIMUM = 0.3, 0.01, 20_000


def _run(tmp: Path, name: str, targets: dict, sequences: int = MAXIMUM, **extra: object) -> dict:
    spec = {"model": {"source": str(MODELS / "bernoulli"), "entrypoint": "model:simulate"},
            "parameters": {"p": P}, "sequences": sequences, "seed": 11, "targets": targets,
            **extra}  # fmt: skip
    run = ancho("run", str(write_spec(tmp, spec, f"{name}.json")), "--json", cwd=tmp)
    assert run.code == 0, run.stderr
    doc = run.json()
    assert doc["run"] == run_id_of(run)
    return doc


def test_a_sem_target_stops_where_the_analytic_answer_says(tmp_path: Path) -> None:
    one = _run(tmp_path, "one", {"hit": {"sem": SEM}}, resources={"max_executors": 1})
    k = one["stopped"]["sequences"]
    assert one["stopped"]["reason"] == "targets met" and one["targets_met"] is True
    assert one["state"] == "FINISHED"
    assert one["ok"] + one["failed"] == k == one["outputs"]["hit"]["count"]
    block = block_size(MAXIMUM)
    assert k % block == 0
    # sem(k) = sqrt(p(1-p)/k) ≈ SEM: k ≈ p(1-p)/SEM² = 2100. The estimate of p(1-p) at k
    # has a standard error of about |1-2p| sqrt(p(1-p)/k); k moves with it, plus a block.
    expected = P * (1 - P) / SEM**2
    spread = expected * abs(1 - 2 * P) * math.sqrt(P * (1 - P) / expected) / (P * (1 - P))
    assert abs(k - expected) <= 4 * spread + block
    assert one["outputs"]["hit"]["sem"] <= SEM
    # Exactly 0..k-1 are stored.
    rows = ancho("results", one["run"], "--format", "jsonl", cwd=tmp_path).jsonl()
    assert [r["sequence"] for r in rows] == list(range(k))
    table = ancho("summary", one["run"], "--format", "table", cwd=tmp_path).stdout
    assert table.splitlines()[1] == f"stopped after {k:,} sequences: targets met"

    # 8 executors with other batch sizes: the same k, the same summary to the bit.
    many = _run(tmp_path, "many", {"hit": {"sem": SEM}},
                resources={"cpus": 0.25, "max_executors": 8})  # fmt: skip
    logs = ancho("logs", many["run"], cwd=tmp_path).stdout
    assert len(set(re.findall(r"\[(e\d+)\] starting", logs))) == 8, logs
    assert many["stopped"] == one["stopped"]
    assert many["outputs"] == one["outputs"]


def test_a_run_that_reaches_its_maximum_first_says_targets_not_met(tmp_path: Path) -> None:
    doc = _run(tmp_path, "short", {"hit": {"ci95_halfwidth": 0.001}, "x": {"rel_ci95": 5.0}},
               sequences=500)  # fmt: skip
    assert doc["targets_met"] is False and "stopped" not in doc
    table = ancho("summary", doc["run"], "--format", "table", cwd=tmp_path).stdout
    assert table.splitlines()[1] == "targets not met within 500 sequences"
    assert (doc["ok"], doc["outputs"]["hit"]["count"]) == (500, 500)
    assert abs(doc["outputs"]["hit"]["mean"] - P) < 4 * math.sqrt(P * (1 - P) / 500)


def test_bad_targets_are_refused_with_their_path(tmp_path: Path) -> None:
    spec = {"model": {"source": str(MODELS / "bernoulli"), "entrypoint": "model:simulate"},
            "sequences": 10,
            "targets": {"hit": {}, "x": {"sem": -1, "mean": 3}, "9z": {"sem": 1}}}  # fmt: skip
    run = ancho("run", str(write_spec(tmp_path, spec)), cwd=tmp_path)
    assert run.code == 2 and "Traceback" not in run.stderr
    for where in ("/targets/hit", "/targets/x/sem", "/targets/x/mean", "/targets"):
        assert where in run.stderr, run.stderr

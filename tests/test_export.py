"""The SQLite store's fast Parquet export equals the generic one, bit for bit."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ancho.results import SequenceResult
from ancho.store import RunRecord, open_store
from ancho.store.base import Store


def _store_with(tmp_path: Path, rows: list[SequenceResult], outputs: list[str]):  # type: ignore[no-untyped-def]
    store = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    store.create_run(RunRecord("r", "r", {}, 1, len(rows), outputs=outputs))
    store.write_results("r", rows)
    return store


def _random_float(rng: np.random.Generator) -> float:
    while True:
        (x,) = struct.unpack("d", struct.pack("Q", int(rng.integers(0, 2**63)) * 2))
        if math.isfinite(x):
            return x


def test_fast_export_matches_generic_export(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = []
    for i in range(70_000):  # more than one 65,536-row chunk
        if i % 11 == 0:
            rows.append(SequenceResult(i, "failed", {}, {"type": "E", "message": "m"}))
            continue
        mixed: int | float = i if i % 2 else i + 0.5
        outs = {"f": _random_float(rng), "k": int(rng.integers(-(2**62), 2**62)),
                "b": bool(i % 3), "m": mixed}  # fmt: skip
        rows.append(SequenceResult(i, "ok", outs))
    store = _store_with(tmp_path, rows, ["f", "k", "b", "m"])
    fast, slow = tmp_path / "fast.parquet", tmp_path / "slow.parquet"
    n = store.export_ok_parquet("r", str(fast))
    Store.export_ok_parquet(store, "r", str(slow))
    a, b = pq.read_table(fast), pq.read_table(slow)
    assert n == sum(r.status == "ok" for r in rows) == a.num_rows
    assert a.schema.equals(b.schema)
    assert a.equals(b)
    assert str(a.schema.field("b").type) == "bool" and str(a.schema.field("m").type) == "double"


def test_non_finite_outputs_fall_back_and_survive(tmp_path: Path) -> None:
    values = [1.5, math.nan, math.inf, -math.inf, -0.0]
    rows = [SequenceResult(i, "ok", {"x": v}) for i, v in enumerate(values)]
    store = _store_with(tmp_path, rows, ["x"])
    path = tmp_path / "x.parquet"
    assert store.export_ok_parquet("r", str(path)) == 5
    got = pq.read_table(path).column("x").to_pylist()
    assert [struct.pack("d", v) for v in got] == [struct.pack("d", v) for v in values]
    assert not (tmp_path / "x.parquet.partial").exists()

"""Parquet export of results: types, streaming in bounded chunks, widening, errors."""

from __future__ import annotations

import math
import struct
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ancho.parquet import OutputType, infer_output_types, write_results_parquet
from ancho.results import SequenceResult

TRICKY_FLOATS = [
    0.1,
    -0.0,
    5e-324,
    1.7976931348623157e308,
    math.inf,
    -math.inf,
    math.nan,
    2.0**53 + 1.0,
]


def ok(sequence: int, **outputs: int | float | bool) -> SequenceResult:
    return SequenceResult(sequence, "ok", dict(outputs))


def failed(sequence: int, kind: str = "ValueError", message: str = "boom") -> SequenceResult:
    error = {"type": kind, "message": message, "traceback": "Traceback ..."}
    return SequenceResult(sequence, "failed", {}, error)


def bits(value: float) -> bytes:
    return struct.pack("<d", value)


def test_round_trip_keeps_types_and_values_exactly(tmp_path: Path) -> None:
    ints = [0, -1, 2**63 - 1, -(2**63), 7, 8, 9, 10]
    results = [
        ok(i, x=x, n=n, flag=i % 2 == 0)
        for i, (x, n) in enumerate(zip(TRICKY_FLOATS, ints, strict=True))
    ]
    results.append(failed(len(results), "ZeroDivisionError", "division by zero"))
    path = tmp_path / "r.parquet"

    assert write_results_parquet(results, path) == len(results)

    table = pq.read_table(path)
    assert table.schema.names == ["sequence", "status", "x", "n", "flag", "error"]
    assert [f.type for f in table.schema] == [
        pa.int64(),
        pa.string(),
        pa.float64(),
        pa.int64(),
        pa.bool_(),
        pa.string(),
    ]
    rows = table.to_pylist()
    for row, result in zip(rows[:-1], results[:-1], strict=True):
        assert row["sequence"] == result.sequence
        assert row["status"] == "ok"
        assert bits(row["x"]) == bits(float(result.outputs["x"]))
        assert row["n"] == result.outputs["n"]
        assert row["flag"] is result.outputs["flag"]
        assert row["error"] is None
    assert rows[-1] == {
        "sequence": 8,
        "status": "failed",
        "x": None,
        "n": None,
        "flag": None,
        "error": "ZeroDivisionError: division by zero",
    }


def test_numpy_scalars_are_accepted(tmp_path: Path) -> None:
    # Models return numpy scalars all the time, whatever the annotations say.
    results = [ok(0, x=np.float64(1.5), n=np.int64(3), flag=np.bool_(True))]  # type: ignore[arg-type]
    write_results_parquet(results, tmp_path / "r.parquet")
    table = pq.read_table(tmp_path / "r.parquet")
    assert [f.type for f in table.schema][2:5] == [pa.float64(), pa.int64(), pa.bool_()]
    assert table.to_pylist()[0] == {
        "sequence": 0,
        "status": "ok",
        "x": 1.5,
        "n": 3,
        "flag": True,
        "error": None,
    }


def test_each_chunk_is_one_bounded_row_group(tmp_path: Path) -> None:
    results = (ok(i, x=float(i)) if i % 7 else failed(i) for i in range(10_500))
    path = tmp_path / "r.parquet"

    assert write_results_parquet(results, path, chunk_rows=1000) == 10_500

    metadata = pq.ParquetFile(path).metadata
    sizes = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
    assert sizes == [1000] * 10 + [500]
    table = pq.read_table(path)
    assert table.column("sequence").to_pylist() == list(range(10_500))


def test_memory_is_bounded_by_the_chunk_not_the_run(tmp_path: Path) -> None:
    def generate(count: int) -> Iterator[SequenceResult]:
        for i in range(count):
            yield ok(i, a=i * 0.5, b=i, c=i % 3 == 0)

    def peak(count: int) -> int:
        tracemalloc.start()
        try:
            write_results_parquet(generate(count), tmp_path / f"{count}.parquet", chunk_rows=500)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(2_000), peak(40_000)
    # Twenty times the rows must not take anywhere near twenty times the memory.
    assert large < 2 * small + 1_000_000, (small, large)


def test_a_later_float_widens_an_int_column(tmp_path: Path) -> None:
    results = [ok(i, v=i, flag=True) for i in range(5)] + [ok(5, v=2.5, flag=3)]
    path = tmp_path / "r.parquet"

    write_results_parquet(results, path, chunk_rows=2)

    table = pq.read_table(path)
    assert table.schema.field("v").type == pa.float64()
    assert table.schema.field("flag").type == pa.int64()
    assert table.column("v").to_pylist() == [0.0, 1.0, 2.0, 3.0, 4.0, 2.5]
    assert table.column("flag").to_pylist() == [1, 1, 1, 1, 1, 3]
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.parquet"]


def test_an_output_first_seen_late_gets_nulls_before(tmp_path: Path) -> None:
    results = [failed(0), failed(1), ok(2, v=1), ok(3, v=2, w=True)]
    path = tmp_path / "r.parquet"

    write_results_parquet(results, path, chunk_rows=2)

    table = pq.read_table(path)
    assert table.schema.names == ["sequence", "status", "v", "w", "error"]
    assert table.column("v").to_pylist() == [None, None, 1, 2]
    assert table.column("w").to_pylist() == [None, None, None, True]
    assert table.schema.field("v").type == pa.int64()


def test_given_output_types_fix_the_columns_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "r.parquet"
    types: dict[str, OutputType] = {"b": "float", "a": "int"}

    assert write_results_parquet([failed(0)], path, output_types=types) == 1

    schema = pq.read_schema(path)
    assert schema.names == ["sequence", "status", "b", "a", "error"]
    assert [schema.field(n).type for n in ("b", "a")] == [pa.float64(), pa.int64()]


def test_ok_only_drops_failed_rows_and_the_error_column(tmp_path: Path) -> None:
    results = [ok(0, v=1.0), failed(1), ok(2, v=3.0), failed(3)]
    path = tmp_path / "r.parquet"

    assert write_results_parquet(results, path, ok_only=True, chunk_rows=1) == 2

    table = pq.read_table(path)
    assert table.schema.names == ["sequence", "status", "v"]
    assert table.to_pylist() == [
        {"sequence": 0, "status": "ok", "v": 1.0},
        {"sequence": 2, "status": "ok", "v": 3.0},
    ]


def test_no_results_still_make_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "r.parquet"
    assert write_results_parquet(iter(()), path) == 0
    table = pq.read_table(path)
    assert table.num_rows == 0
    assert table.schema.names == ["sequence", "status", "error"]


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ({"status": 1.0}, "clashes"),
        ({"x": "text"}, "not a bool, int or float"),
        ({"x": 2**63}, "int64"),
    ],
)
def test_bad_outputs_are_rejected_and_leave_no_file(
    tmp_path: Path, outputs: dict[str, int | float | bool], message: str
) -> None:
    path = tmp_path / "r.parquet"
    path.write_bytes(b"previous export")
    results = [ok(0, x=1.0), SequenceResult(1, "ok", outputs)]

    with pytest.raises(ValueError, match=message):
        write_results_parquet(results, path, chunk_rows=1)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.parquet"]
    assert path.read_bytes() == b"previous export"


def test_infer_output_types_takes_the_widest_kind() -> None:
    results = [failed(0), ok(1, a=True, b=1, c=1), ok(2, a=False, b=2.5, c=2), ok(3, d=np.int64(1))]  # type: ignore[arg-type]
    assert infer_output_types(results) == {"a": "bool", "b": "float", "c": "int", "d": "int"}

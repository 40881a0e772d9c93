"""Export a run's results to a Parquet file, streaming, in bounded memory.

The file has one row per sequence: ``sequence`` (int64), ``status`` (string), one column per
output, and ``error`` (string ``"Type: message"``, null for ok rows) unless ``ok_only``.
It is what ``ancho results --format parquet`` writes and what the summary job reads.

Output column types follow the values: bools → ``bool``, ints → ``int64``, floats →
``float64`` (Python floats are stored bit for bit, NaN and ±inf included). A column whose
values mix kinds is widened along bool → int64 → float64 (a bool in a float column is stored
as 0.0/1.0). Outputs missing from a row (failed rows, for instance) are null.

Results are consumed once, ``chunk_rows`` at a time; each chunk becomes one row group, so
memory is bounded by the chunk, never by the run. The types are decided from
``output_types`` if given, else from the first chunk. Should a later chunk need a wider
type or a new column, the row groups already written are copied, one at a time, into a
file with the wider schema; passing ``output_types`` (e.g. from
:func:`infer_output_types` over a first pass of the store) avoids that copy. The file
appears at ``path`` only once complete (written beside it, then renamed).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ancho.results import SequenceResult

__all__ = ["OutputType", "infer_output_types", "write_results_parquet"]

OutputType = Literal["bool", "int", "float"]

_RANK: dict[OutputType, int] = {"bool": 0, "int": 1, "float": 2}
_ARROW: dict[OutputType, pa.DataType] = {
    "bool": pa.bool_(),
    "int": pa.int64(),
    "float": pa.float64(),
}
_RESERVED = frozenset({"sequence", "status", "error"})
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def infer_output_types(results: Iterable[SequenceResult]) -> dict[str, OutputType]:
    """The narrowest column type of every output seen in ``results``, in first-seen order.

    One pass, constant memory per output name. Use it over a first pass of a store so that
    :func:`write_results_parquet` never has to widen a column it has started writing.
    """
    types: dict[str, OutputType] = {}
    for result in results:
        for name, value in result.outputs.items():
            kind = _kind_of(name, value)
            seen = types.get(name)
            if seen is None or _RANK[kind] > _RANK[seen]:
                types[name] = kind
    return types


def write_results_parquet(
    results: Iterable[SequenceResult],
    path: str | os.PathLike[str],
    *,
    output_types: Mapping[str, OutputType] | None = None,
    ok_only: bool = False,
    chunk_rows: int = 65536,
) -> int:
    """Write ``results`` to a Parquet file at ``path``; return the number of rows written.

    ``output_types`` fixes the output columns (in its order) and their starting types;
    without it they come from the first chunk. Either way a later value that needs a wider
    type, or an output name not seen yet, widens the file (see the module docstring).
    ``ok_only`` drops failed sequences and the ``error`` column. Rows are written in the
    order given (stores yield sequence order); ``chunk_rows`` bounds both memory and the
    row-group size.

    Raises ``ValueError`` for an output named like a fixed column (``sequence``, ``status``,
    ``error``), an int outside int64, or a value that is not a bool, int or float.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    target = Path(path)
    types: dict[str, OutputType] = {}
    for name, kind in (output_types or {}).items():
        _check_name(name)
        types[name] = kind

    partial = target.with_name(f".{target.name}.partial")
    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None
    rows = 0
    try:
        for chunk in _chunks(results, chunk_rows):
            if ok_only:
                chunk = [r for r in chunk if r.status == "ok"]
                if not chunk:
                    continue
            columns = _output_columns(chunk, types)
            new_schema = _schema(types, ok_only)
            if writer is None or schema is None:
                writer = pq.ParquetWriter(partial, new_schema)
            elif not new_schema.equals(schema):
                writer = _widen(writer, partial, new_schema)
            schema = new_schema
            writer.write_table(_table(chunk, columns, schema, ok_only), row_group_size=chunk_rows)
            rows += len(chunk)
        if writer is None:
            # No rows at all: still a valid file, with the columns known so far.
            writer = pq.ParquetWriter(partial, _schema(types, ok_only))
        writer.close()
        writer = None
        os.replace(partial, target)
    finally:
        if writer is not None:
            writer.close()
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return rows


def _chunks(results: Iterable[SequenceResult], size: int) -> Iterator[list[SequenceResult]]:
    iterator = iter(results)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _output_columns(
    chunk: list[SequenceResult], types: dict[str, OutputType]
) -> dict[str, list[int | float | bool | None]]:
    """Per output, this chunk's values (None where a row lacks it); widens ``types``."""
    columns: dict[str, list[int | float | bool | None]] = {name: [] for name in types}
    for position, result in enumerate(chunk):
        for name, value in result.outputs.items():
            column = columns.get(name)
            if column is None:
                _check_name(name)
                columns[name] = column = []
            # Rows that lack this output (failed ones) are padded with nulls lazily.
            if len(column) < position:
                column.extend([None] * (position - len(column)))
            column.append(value)
    for name, column in columns.items():
        if len(column) < len(chunk):
            column.extend([None] * (len(chunk) - len(column)))
        kind = _column_kind(name, column)
        seen = types.get(name)
        if kind is not None and (seen is None or _RANK[kind] > _RANK[seen]):
            types[name] = kind
        elif seen is None:
            # Seen only as missing values so far; float is the type that holds anything.
            types[name] = "float"
    return columns


def _column_kind(name: str, column: list[int | float | bool | None]) -> OutputType | None:
    kind: OutputType | None = None
    # Classifying distinct Python types, not every value, keeps this cheap for 10M rows.
    for value_type in {type(v) for v in column}:
        if value_type is type(None):
            continue
        sample = next(v for v in column if type(v) is value_type)
        this = _kind_of(name, sample)
        if this == "int":
            ints = [int(v) for v in column if v is not None and type(v) is value_type]
            if min(ints) < _INT64_MIN or max(ints) > _INT64_MAX:
                raise ValueError(f"output {name!r}: integer outside the int64 range")
        if kind is None or _RANK[this] > _RANK[kind]:
            kind = this
    return kind


def _kind_of(name: str, value: object) -> OutputType:
    if isinstance(value, bool | np.bool_):
        return "bool"
    if isinstance(value, int | np.integer):
        if isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"output {name!r}: integer {value} is outside the int64 range")
        return "int"
    if isinstance(value, float | np.floating):
        return "float"
    raise ValueError(
        f"output {name!r}: {type(value).__name__} value {value!r} is not a bool, int or float"
    )


def _check_name(name: str) -> None:
    if name in _RESERVED:
        raise ValueError(f"output name {name!r} clashes with a fixed results column")


def _schema(types: Mapping[str, OutputType], ok_only: bool) -> pa.Schema:
    fields = [pa.field("sequence", pa.int64(), nullable=False), pa.field("status", pa.string())]
    fields += [pa.field(name, _ARROW[kind]) for name, kind in types.items()]
    if not ok_only:
        fields.append(pa.field("error", pa.string()))
    return pa.schema(fields)


def _table(
    chunk: list[SequenceResult],
    columns: dict[str, list[int | float | bool | None]],
    schema: pa.Schema,
    ok_only: bool,
) -> pa.Table:
    arrays: list[pa.Array] = [
        pa.array([r.sequence for r in chunk], type=pa.int64()),
        pa.array([r.status for r in chunk], type=pa.string()),
    ]
    for name in schema.names[2 : len(schema.names) - (0 if ok_only else 1)]:
        arrays.append(_array(columns.get(name), len(chunk), schema.field(name).type))
    if not ok_only:
        arrays.append(pa.array([_error_text(r) for r in chunk], type=pa.string()))
    return pa.Table.from_arrays(arrays, schema=schema)


def _array(
    values: list[int | float | bool | None] | None, length: int, arrow_type: pa.DataType
) -> pa.Array:
    if values is None:
        return pa.nulls(length, type=arrow_type)
    try:
        return pa.array(values, type=arrow_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Mixed kinds (a bool among ints, an int among floats): convert each value exactly
        # as the wider Python type would hold it.
        convert = float if pa.types.is_floating(arrow_type) else int
        return pa.array([None if v is None else convert(v) for v in values], type=arrow_type)


def _error_text(result: SequenceResult) -> str | None:
    if result.status == "ok" or result.error is None:
        return None
    kind = result.error.get("type", "Error")
    message = result.error.get("message", "")
    return f"{kind}: {message}" if message else kind


def _widen(writer: pq.ParquetWriter, partial: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """Rewrite what ``writer`` wrote so far with ``schema``; return a writer to go on with."""
    writer.close()
    previous = partial.with_name(partial.name + ".old")
    os.replace(partial, previous)
    widened = pq.ParquetWriter(partial, schema)
    try:
        source = pq.ParquetFile(previous)
        for group in range(source.num_row_groups):
            table = source.read_row_group(group)
            columns = [
                table.column(field.name).cast(field.type)
                if field.name in table.column_names
                else pa.nulls(table.num_rows, type=field.type)
                for field in schema
            ]
            widened.write_table(pa.Table.from_arrays(columns, schema=schema))
        source.close()
    except BaseException:
        widened.close()
        raise
    finally:
        previous.unlink()
    return widened

"""SQLite store: the default on one machine (``./.ancho/ancho.db`` or ``ANCHO_STORE``).

WAL mode lets executors (separate processes) write while the scheduler and CLI read.
Each thread gets its own connection; writers wait on the database lock through
``busy_timeout`` rather than failing. Outputs are stored as one JSON text per
sequence: Python's ``repr`` of floats round-trips exactly, so stored outputs are
bitwise what the model returned.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import NotFound, StoreError
from ..results import SequenceResult
from .base import (
    BatchRecord,
    Counts,
    Event,
    ExperimentRecord,
    RunRecord,
    Store,
    UserRecord,
    check_model_digest,
    decode_result,
)

SCHEMA_VERSION = 1
_PAGE = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, owner TEXT NOT NULL, state TEXT NOT NULL,
    spec TEXT NOT NULL, seed INTEGER NOT NULL, sequences INTEGER NOT NULL,
    outputs TEXT, ok INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
    running INTEGER NOT NULL DEFAULT 0, reason TEXT, created_at REAL NOT NULL,
    started_at REAL, finished_at REAL, kill_requested INTEGER NOT NULL DEFAULT 0,
    next_index INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS results (
    run_id TEXT NOT NULL, sequence INTEGER NOT NULL, status TEXT NOT NULL,
    outputs TEXT NOT NULL, error TEXT, attempt INTEGER NOT NULL, duration_s REAL NOT NULL,
    PRIMARY KEY (run_id, sequence)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS summaries (run_id TEXT PRIMARY KEY, summary TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, ts REAL NOT NULL,
    source TEXT NOT NULL, level TEXT NOT NULL, message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_run ON events (run_id, id);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL, store TEXT NOT NULL,
    created_at REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS models (
    digest TEXT PRIMARY KEY, data BLOB NOT NULL, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS partials (
    run_id TEXT NOT NULL, block INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (run_id, block)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS live (run_id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS experiments (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, owner TEXT NOT NULL, spec TEXT NOT NULL,
    points TEXT NOT NULL, runs TEXT NOT NULL, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    run_id TEXT NOT NULL, task_id TEXT NOT NULL, start INTEGER NOT NULL, stop INTEGER NOT NULL,
    attempt INTEGER NOT NULL, executor_id TEXT NOT NULL, agent_id TEXT NOT NULL,
    PRIMARY KEY (run_id, task_id)
);
"""

_RUN_FIELDS = {
    "name",
    "owner",
    "state",
    "outputs",
    "ok",
    "failed",
    "running",
    "reason",
    "started_at",
    "finished_at",
    "kill_requested",
    "next_index",
}


def _dumps(value: Any) -> str:
    # allow_nan: models may return non-finite floats; Python's JSON writes NaN/Infinity
    # and reads them back as the same float values.
    return json.dumps(value, separators=(",", ":"), allow_nan=True)


def _experiment(row: Any) -> ExperimentRecord:
    id_, name, owner, spec, points, runs, created_at = tuple(row)
    return ExperimentRecord(id_, name, owner, json.loads(spec), json.loads(points),
                            json.loads(runs), created_at)  # fmt: skip


class SQLiteStore(Store):
    """A store in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        # Absolute, so the URL means the same file to executors in other folders.
        self.path = Path(path).absolute()
        self.url = f"sqlite:///{self.path}"
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._conn()
            conn.executescript(_SCHEMA)
            self._check_version(conn)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.url}: cannot open the store ({exc})") from None

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=60000")
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the lock up front (no upgrade deadlock)."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.url}: cannot write ({exc})") from None
        try:
            yield conn
        except BaseException as exc:
            conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"{self.url}: write failed ({exc})") from None
            raise
        else:
            conn.execute("COMMIT")

    def _check_version(self, conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            conn.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        elif int(row[0]) > SCHEMA_VERSION:
            raise StoreError(
                f"{self.url}: store schema version {row[0]} is newer than this Ancho "
                f"understands ({SCHEMA_VERSION}); upgrade Ancho"
            )

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # runs -----------------------------------------------------------------
    def create_run(self, run: RunRecord) -> None:
        """Insert a new run."""
        with self._write() as c:
            c.execute(
                "INSERT INTO runs (id, name, owner, state, spec, seed, sequences, outputs,"
                " created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    run.id,
                    run.name,
                    run.owner,
                    run.state,
                    _dumps(run.spec),
                    run.seed,
                    run.sequences,
                    None if run.outputs is None else _dumps(run.outputs),
                    run.created_at or time.time(),
                ),
            )

    def get_run(self, run_id: str) -> RunRecord:
        """The run, or NotFound."""
        row = self._conn().execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise NotFound(f"no run {run_id!r} in {self.url}")
        return self._run(row)

    def list_runs(self, owner: str | None = None) -> list[RunRecord]:
        """Runs, newest first."""
        if owner is None:
            rows = self._conn().execute("SELECT * FROM runs ORDER BY created_at DESC").fetchall()
        else:
            rows = (
                self._conn()
                .execute("SELECT * FROM runs WHERE owner=? ORDER BY created_at DESC", (owner,))
                .fetchall()
            )
        return [self._run(r) for r in rows]

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set some fields of a run."""
        unknown = set(fields) - _RUN_FIELDS
        if unknown:
            raise ValueError(f"not run fields: {sorted(unknown)}")
        if "outputs" in fields and fields["outputs"] is not None:
            fields["outputs"] = _dumps(fields["outputs"])
        cols = ", ".join(f"{k}=?" for k in fields)
        with self._write() as c:
            cur = c.execute(f"UPDATE runs SET {cols} WHERE id=?", (*fields.values(), run_id))
            if cur.rowcount == 0:
                raise NotFound(f"no run {run_id!r} in {self.url}")

    def register_outputs(self, run_id: str, names: Sequence[str]) -> list[str]:
        """First writer wins: later executors must produce the same names."""
        conn = self._conn()
        with self._write() as c:
            c.execute(
                "UPDATE runs SET outputs=? WHERE id=? AND outputs IS NULL",
                (_dumps(list(names)), run_id),
            )
        row = conn.execute("SELECT outputs FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise NotFound(f"no run {run_id!r} in {self.url}")
        recorded: list[str] = json.loads(row[0])
        return recorded

    @staticmethod
    def _run(row: tuple[Any, ...]) -> RunRecord:
        (rid, name, owner, state, spec, seed, sequences, outputs, ok, failed, running,
         reason, created, started, finished, kill, next_index) = row  # fmt: skip
        return RunRecord(
            id=rid,
            name=name,
            owner=owner,
            state=state,
            spec=json.loads(spec),
            seed=seed,
            sequences=sequences,
            outputs=None if outputs is None else json.loads(outputs),
            ok=ok,
            failed=failed,
            running=running,
            reason=reason,
            created_at=created,
            started_at=started,
            finished_at=finished,
            kill_requested=bool(kill),
            next_index=next_index,
        )

    # results --------------------------------------------------------------
    def write_results(self, run_id: str, results: Sequence[SequenceResult]) -> None:
        """Upsert a chunk of results in one transaction."""
        rows = [
            (
                run_id,
                r.sequence,
                r.status,
                _dumps(r.outputs),
                None if r.error is None else _dumps(r.error),
                r.attempt,
                r.duration_s,
            )
            for r in results
        ]
        with self._write() as c:
            c.executemany("INSERT OR REPLACE INTO results VALUES (?,?,?,?,?,?,?)", rows)

    def iter_results(
        self, run_id: str, start: int = 0, stop: int | None = None
    ) -> Iterator[SequenceResult]:
        """Results in sequence order, a page at a time (keyset pagination)."""
        self.get_run(run_id)  # NotFound for an unknown run, as every store does
        upper = stop if stop is not None else 2**63 - 1
        cursor = start
        conn = self._conn()
        while True:
            rows = conn.execute(
                "SELECT sequence, status, outputs, error, attempt, duration_s FROM results"
                " WHERE run_id=? AND sequence>=? AND sequence<? ORDER BY sequence LIMIT ?",
                (run_id, cursor, upper, _PAGE),
            ).fetchall()
            for row in rows:
                yield decode_result(tuple(row))
            if len(rows) < _PAGE:
                return
            cursor = rows[-1][0] + 1

    def count_results(self, run_id: str) -> Counts:
        """Stored sequences by status and by attempt."""
        self.get_run(run_id)
        counts = Counts()
        rows = self._conn().execute(
            "SELECT status, attempt, count(*) FROM results WHERE run_id=? GROUP BY status, attempt",
            (run_id,),
        )
        for status, attempt, n in rows:
            if status == "ok":
                counts.ok += n
            else:
                counts.failed += n
            counts.by_attempt[attempt] = counts.by_attempt.get(attempt, 0) + n
        return counts

    def export_ok_parquet(self, run_id: str, path: str) -> int:
        """Columns straight from SQLite's JSON functions (C, ~10x faster than Python).

        Falls back to the generic path when SQLite cannot read a row's JSON (non-finite
        floats are written as NaN/Infinity, which SQLite before 3.42 rejects).
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        names = self.get_run(run_id).outputs or []
        conn = self._conn()
        where = "FROM results WHERE run_id=? AND status='ok'"
        try:
            kinds = [
                conn.execute(
                    f"SELECT max(json_type(outputs, '$.{n}')='real'),"
                    f" max(json_type(outputs, '$.{n}')='integer') {where}",
                    (run_id,),
                ).fetchone()
                for n in names  # names match [A-Za-z_][A-Za-z0-9_]*: safe in a JSON path
            ]
            types = [
                pa.float64() if real else pa.int64() if integer else pa.bool_()
                for real, integer in kinds
            ]
            fields = [pa.field("sequence", pa.int64(), False), pa.field("status", pa.string())]
            schema = pa.schema(fields + [pa.field(n, t) for n, t in zip(names, types, strict=True)])
            columns = "".join(f", json_extract(outputs, '$.{n}')" for n in names)
            cursor = conn.execute(f"SELECT sequence{columns} {where} ORDER BY sequence", (run_id,))
            total = 0
            tmp = f"{path}.partial"
            with pq.ParquetWriter(tmp, schema) as writer:
                while rows := cursor.fetchmany(65536):
                    cols = list(zip(*rows, strict=True))
                    arrays = [pa.array(cols[0], pa.int64()), pa.array(["ok"] * len(rows))]
                    for col, typ in zip(cols[1:], types, strict=True):
                        # JSON true/false come back as 1/0: read as int8, then cast.
                        raw = pa.array(col, pa.int8() if typ == pa.bool_() else typ)
                        arrays.append(raw.cast(typ))
                    writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
                    total += len(rows)
            Path(tmp).replace(path)
            return total
        except (sqlite3.Error, pa.ArrowException, TypeError, ValueError, OverflowError):
            Path(f"{path}.partial").unlink(missing_ok=True)
            return super().export_ok_parquet(run_id, path)

    # summaries ------------------------------------------------------------
    def put_summary(self, run_id: str, summary: dict[str, Any]) -> None:
        """Store the summary (strict JSON: non-finite values are already null)."""
        text = json.dumps(summary, allow_nan=False)
        with self._write() as c:
            c.execute("INSERT OR REPLACE INTO summaries VALUES (?, ?)", (run_id, text))

    def get_summary(self, run_id: str) -> dict[str, Any] | None:
        """The stored summary, if any."""
        row = (
            self._conn()
            .execute("SELECT summary FROM summaries WHERE run_id=?", (run_id,))
            .fetchone()
        )
        if row is None:
            return None
        summary: dict[str, Any] = json.loads(row[0])
        return summary

    # events ---------------------------------------------------------------
    def append_events(self, run_id: str, events: Iterable[tuple[str, str, str]]) -> None:
        """Append log lines."""
        now = time.time()
        rows = [(run_id, now, src, level, msg) for src, level, msg in events]
        if rows:
            with self._write() as c:
                c.executemany(
                    "INSERT INTO events (run_id, ts, source, level, message) VALUES (?,?,?,?,?)",
                    rows,
                )

    def iter_events(self, run_id: str, after: int = 0) -> list[Event]:
        """Log lines after id ``after``."""
        rows = self._conn().execute(
            "SELECT id, run_id, ts, source, level, message FROM events"
            " WHERE run_id=? AND id>? ORDER BY id",
            (run_id, after),
        )
        return [Event(*row) for row in rows]

    # experiments ------------------------------------------------------------
    def create_experiment(self, experiment: ExperimentRecord) -> None:
        """Insert a new experiment."""
        e = experiment
        with self._write() as c:
            c.execute(
                "INSERT INTO experiments VALUES (?,?,?,?,?,?,?)",
                (e.id, e.name, e.owner, _dumps(e.spec), _dumps(e.points), _dumps(e.runs),
                 e.created_at),
            )  # fmt: skip

    def get_experiment(self, experiment_id: str) -> ExperimentRecord:
        """The experiment, or NotFound."""
        row = (
            self._conn()
            .execute("SELECT * FROM experiments WHERE id=?", (experiment_id,))
            .fetchone()
        )
        if row is None:
            raise NotFound(f"no experiment {experiment_id!r} in {self.url}")
        return _experiment(row)

    def list_experiments(self, owner: str | None = None) -> list[ExperimentRecord]:
        """Experiments, newest first."""
        rows = self._conn().execute("SELECT * FROM experiments ORDER BY created_at DESC")
        return [e for e in map(_experiment, rows) if owner is None or e.owner == owner]

    # users ------------------------------------------------------------------
    def put_user(self, user: UserRecord) -> None:
        """Insert or replace a user."""
        with self._write() as c:
            c.execute(
                "INSERT OR REPLACE INTO users VALUES (?,?,?,?,?)",
                (user.name, user.token_sha256, user.store, user.created_at, int(user.revoked)),
            )

    def list_users(self) -> list[UserRecord]:
        """Users by name."""
        rows = self._conn().execute("SELECT * FROM users ORDER BY name")
        return [UserRecord(n, t, s, c, bool(r)) for n, t, s, c, r in rows]

    # models -----------------------------------------------------------------
    def put_model(self, digest: str, data: bytes) -> None:
        """Keep a model tarball under its verified digest (a second put is a no-op)."""
        check_model_digest(digest, data)
        with self._write() as c:
            c.execute("INSERT OR IGNORE INTO models VALUES (?, ?, ?)", (digest, data, time.time()))

    def get_model(self, digest: str) -> bytes:
        """The model tarball, or NotFound."""
        row = self._conn().execute("SELECT data FROM models WHERE digest=?", (digest,)).fetchone()
        if row is None:
            raise NotFound(f"no model sha256:{digest} in {self.url}")
        return bytes(row[0])

    # batches and meta -----------------------------------------------------
    def put_partial(self, run_id: str, block: int, partial: Mapping[str, Any]) -> None:
        """Store (or replace) a block's partial summary."""
        data = json.dumps(partial, separators=(",", ":"), allow_nan=False)
        with self._write() as c:
            c.execute("INSERT OR REPLACE INTO partials VALUES (?,?,?)", (run_id, block, data))

    def list_partials(self, run_id: str) -> dict[int, dict[str, Any]]:
        """The run's partial summaries by block."""
        rows = self._conn().execute(
            "SELECT block, data FROM partials WHERE run_id=? ORDER BY block", (run_id,)
        )
        return {int(block): json.loads(data) for block, data in rows}

    def put_live(self, run_id: str, live: Mapping[str, Any]) -> None:
        """Store the run's live statistics."""
        data = json.dumps(live, separators=(",", ":"), allow_nan=False)
        with self._write() as c:
            c.execute("INSERT OR REPLACE INTO live VALUES (?,?)", (run_id, data))

    def get_live(self, run_id: str) -> dict[str, Any] | None:
        """The run's latest live statistics."""
        row = self._conn().execute("SELECT data FROM live WHERE run_id=?", (run_id,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def truncate_run(self, run_id: str, sequences: int, blocks: int) -> None:
        """Drop results from ``sequences`` and partials from ``blocks`` on."""
        with self._write() as c:
            c.execute("DELETE FROM results WHERE run_id=? AND sequence>=?", (run_id, sequences))
            c.execute("DELETE FROM partials WHERE run_id=? AND block>=?", (run_id, blocks))

    def put_batch(self, batch: BatchRecord) -> None:
        """Remember a launched batch."""
        with self._write() as c:
            c.execute(
                "INSERT OR REPLACE INTO batches VALUES (?,?,?,?,?,?,?)",
                (
                    batch.run_id,
                    batch.task_id,
                    batch.start,
                    batch.stop,
                    batch.attempt,
                    batch.executor_id,
                    batch.agent_id,
                ),
            )

    def delete_batch(self, run_id: str, task_id: str) -> None:
        """Forget a finished batch."""
        with self._write() as c:
            c.execute("DELETE FROM batches WHERE run_id=? AND task_id=?", (run_id, task_id))

    def list_batches(self, run_id: str) -> list[BatchRecord]:
        """Batches in flight."""
        rows = self._conn().execute("SELECT * FROM batches WHERE run_id=?", (run_id,))
        return [BatchRecord(*row) for row in rows]

    def get_meta(self, key: str) -> str | None:
        """A framework-wide value."""
        row = self._conn().execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str | None) -> None:
        """Set or delete a framework-wide value."""
        with self._write() as c:
            if value is None:
                c.execute("DELETE FROM meta WHERE key=?", (key,))
            else:
                c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

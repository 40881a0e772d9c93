"""Cassandra store: where a cluster's results live (``cassandra://user:pass@host:port/ks``).

Schema, designed for the access paths:

* ``results`` is partitioned by ``(run_id, bucket)`` with ``bucket = sequence // 10000``
  and clustered by ``sequence``: a partition holds at most 10,000 rows (~1 MB), reads in
  sequence order walk the buckets in order, and a batch of writes for one bucket is a
  single-partition unlogged batch.
* ``runs``, ``summaries``, ``batches`` (in flight), ``events`` (per run, by id) and ``meta``
  (the schema version, the framework ID) are small.
* ``models`` holds uploaded model tarballs (``sha256:`` sources), partitioned by digest
  and split into rows of at most 1 MiB; the static ``chunks`` column, written last,
  marks a complete upload.

Writes are idempotent upserts keyed by (run, sequence); prepared statements go through a
token-aware policy; writes run with bounded concurrency and reads are paged. Driver
errors become :class:`~ancho.errors.StoreError` with what went wrong in words.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

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

log = logging.getLogger("ancho.store")

#: 1: the first schema; 2: ``models`` (uploaded model tarballs).
SCHEMA_VERSION = 4
#: Bytes per row of an uploaded model.
MODEL_CHUNK = 1 << 20
BUCKET = 10_000
_BATCH_ROWS = 50
_CONCURRENCY = 32
_FETCH = 5000
_NAME = re.compile(r"[a-z][a-z0-9_]{0,47}\Z")

_TABLES = {
    "meta": "CREATE TABLE IF NOT EXISTS {ks}.meta (key text PRIMARY KEY, value text)",
    "runs": (
        "CREATE TABLE IF NOT EXISTS {ks}.runs (id text PRIMARY KEY, name text, owner text,"
        " state text, spec text, seed bigint, sequences bigint, outputs text, ok bigint,"
        " failed bigint, running bigint, reason text, created_at double, started_at double,"
        " finished_at double, kill_requested boolean, next_index bigint)"
    ),
    "results": (
        "CREATE TABLE IF NOT EXISTS {ks}.results (run_id text, bucket bigint, sequence bigint,"
        " status text, outputs text, error text, attempt int, duration_s double,"
        " PRIMARY KEY ((run_id, bucket), sequence)) WITH CLUSTERING ORDER BY (sequence ASC)"
    ),
    "summaries": (
        "CREATE TABLE IF NOT EXISTS {ks}.summaries (run_id text PRIMARY KEY, summary text)"
    ),
    "events": (
        "CREATE TABLE IF NOT EXISTS {ks}.events (run_id text, id bigint, ts double, source text,"
        " level text, message text, PRIMARY KEY (run_id, id))"
    ),
    "partials": (
        "CREATE TABLE IF NOT EXISTS {ks}.partials (run_id text, block bigint, data text,"
        " PRIMARY KEY (run_id, block)) WITH CLUSTERING ORDER BY (block ASC)"
    ),
    "live": "CREATE TABLE IF NOT EXISTS {ks}.live (run_id text PRIMARY KEY, data text)",
    "batches": (
        "CREATE TABLE IF NOT EXISTS {ks}.batches (run_id text, task_id text, start bigint,"
        " stop bigint, attempt int, executor_id text, agent_id text,"
        " PRIMARY KEY (run_id, task_id))"
    ),
    "experiments": (
        "CREATE TABLE IF NOT EXISTS {ks}.experiments (id text PRIMARY KEY, name text,"
        " owner text, spec text, points text, runs text, created_at double)"
    ),
    "users": (
        "CREATE TABLE IF NOT EXISTS {ks}.users (name text PRIMARY KEY, token_sha256 text,"
        " store text, created_at double, revoked boolean)"
    ),
    "models": (
        "CREATE TABLE IF NOT EXISTS {ks}.models (digest text, chunk int, data blob,"
        " chunks int static, size bigint static, PRIMARY KEY (digest, chunk))"
    ),
}
_EXPERIMENT_COLUMNS = "id, name, owner, spec, points, runs, created_at"
_RUN_COLUMNS = (
    "id, name, owner, state, spec, seed, sequences, outputs, ok, failed, running, reason,"
    " created_at, started_at, finished_at, kill_requested, next_index"
)
#: A run's own role may read its keyspace's schema version, runs, results, summaries,
#: events, partial summaries and uploaded models, and write results, events, partial
#: summaries, summaries and runs (executors register the run's outputs and store each
#: block's partial; the summary job stores the summary). Nothing on users or batches,
#: nothing on any other keyspace.
RUN_GRANTS = (
    ("SELECT", ("meta", "runs", "results", "summaries", "events", "models", "partials")),
    ("MODIFY", ("runs", "results", "summaries", "events", "partials")),
)
#: Pauses before trying again a re-key that Cassandra refused as too soon (7 s in all).
_REKEY_WAITS = (0.5, 1.0, 1.5, 2.0, 2.0)
_RUN_FIELDS = frozenset(
    {"name", "owner", "state", "outputs", "ok", "failed", "running", "reason", "started_at",
     "finished_at", "kill_requested", "next_index"}
)  # fmt: skip


@dataclass(slots=True, frozen=True)
class CassandraURL:
    """A parsed ``cassandra://[user:pass@]host[:port][,host…]/keyspace``."""

    hosts: tuple[str, ...]
    port: int
    keyspace: str
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> CassandraURL:
        """Parse or raise StoreError naming what is wrong."""
        parts = urlsplit(url)
        if parts.scheme != "cassandra":
            raise StoreError(f"{url}: not a cassandra:// URL")
        netloc = parts.netloc
        userinfo, _, hostlist = netloc.rpartition("@")
        username = password = None
        if userinfo:
            user, _, pw = userinfo.partition(":")
            username, password = unquote(user), unquote(pw)
        hosts: list[str] = []
        port = 9042
        for item in hostlist.split(","):
            host, _, p = item.partition(":")
            if not host:
                raise StoreError(f"{_redact(url)}: no host")
            hosts.append(host)
            if p:
                if not p.isdigit():
                    raise StoreError(f"{_redact(url)}: port {p!r} is not a number")
                port = int(p)
        keyspace = parts.path.strip("/")
        if not _NAME.match(keyspace):
            raise StoreError(f"{_redact(url)}: keyspace {keyspace!r} must match [a-z][a-z0-9_]*")
        return cls(tuple(hosts), port, keyspace, username, password)

    def with_credentials(self, username: str, password: str, keyspace: str) -> str:
        """The URL for another role and keyspace on the same cluster."""
        hosts = ",".join(self.hosts)
        return f"cassandra://{username}:{password}@{hosts}:{self.port}/{keyspace}"


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def _setter(event: threading.Event, into: list[Any] | None = None) -> Any:
    """A driver callback that keeps what it is given in ``into`` and sets ``event``."""

    def callback(value: Any) -> None:
        if into is not None:
            into.append(value)
        event.set()

    return callback


#: How long a write waits for Cassandra's answer (its own timeouts are 2 s for a write;
#: this only catches a request the driver lost).
ANSWER_TIMEOUT_S = 30.0

#: How late (by the writer's clock against the others') a log line may be stored and
#: still reach a follower.
LATE_EVENT_S = 30.0


def _describe_driver_error(url: str, exc: Exception) -> StoreError:
    """Turn a driver exception into a sentence a person can act on."""
    from cassandra.cluster import NoHostAvailable

    from cassandra import AuthenticationFailed, Unauthorized  # type: ignore[attr-defined]

    where = _redact(url)
    if isinstance(exc, NoHostAvailable):
        errors = list(exc.errors.values())
        if any(isinstance(e, AuthenticationFailed) for e in errors):
            return StoreError(f"{where}: authentication failed (wrong user or password)")
        if errors and all(isinstance(e, Unauthorized) for e in errors):
            return StoreError(f"{where}: not authorised: {errors[0]}")
        if errors and not any(isinstance(e, OSError | ConnectionError) for e in errors):
            return StoreError(f"{where}: Cassandra refused the request: {errors[0]}")
        return StoreError(f"{where}: cannot reach Cassandra ({exc.args[0]})")
    if isinstance(exc, AuthenticationFailed):
        return StoreError(f"{where}: authentication failed (wrong user or password)")
    if isinstance(exc, Unauthorized):
        return StoreError(f"{where}: not authorised: {exc}")
    return StoreError(f"{where}: Cassandra error: {type(exc).__name__}: {exc}")


def replication_factor(nodes: int) -> int:
    """Copies of each row on a ring of ``nodes``: three where there are three or more."""
    return max(1, min(3, nodes))


class CassandraStore(Store):
    """The store in one Cassandra keyspace."""

    def __init__(self, url: str, *, connect_timeout: float = 10.0) -> None:
        from cassandra.auth import PlainTextAuthProvider
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import (
            DCAwareRoundRobinPolicy,
            ExponentialReconnectionPolicy,
            TokenAwarePolicy,
        )

        self.url = url
        self.config = CassandraURL.parse(url)
        c = self.config
        auth = PlainTextAuthProvider(c.username, c.password) if c.username else None
        from cassandra import ConsistencyLevel  # type: ignore[attr-defined]

        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
            # QUORUM of min(3, ring size) replicas: a result is stored once a majority
            # has it, so losing one node of three loses nothing (on one node: ONE).
            consistency_level=ConsistencyLevel.QUORUM,
            request_timeout=30.0,
        )
        try:
            self._cluster = Cluster(
                list(c.hosts),
                port=c.port,
                auth_provider=auth,
                execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                connect_timeout=connect_timeout,
                protocol_version=5,
                # Reconnect within seconds of a restarted node, not the default minutes.
                reconnection_policy=ExponentialReconnectionPolicy(0.5, 4.0),
            )
        except Exception as exc:  # e.g. UnresolvableContactPoints
            raise StoreError(
                f"{_redact(url)}: cannot reach Cassandra ({type(exc).__name__}: {exc})"
            ) from None
        self._event_ids = itertools.count()
        self._lock = threading.Lock()
        try:
            self.session = self._cluster.connect()
            self._ensure_schema()
            self._prepare()
        except StoreError:
            self._cluster.shutdown()
            raise
        except Exception as exc:
            self._cluster.shutdown()
            raise _describe_driver_error(url, exc) from None

    # --- schema -----------------------------------------------------------------------
    def _replication(self) -> str:
        """The replication map of a new keyspace: min(3, nodes in the ring) copies."""
        nodes = len(self._cluster.metadata.all_hosts())
        return f"{{'class': 'SimpleStrategy', 'replication_factor': {replication_factor(nodes)}}}"

    def _ensure_schema(self) -> None:
        """Create missing tables (needs CREATE) or check they exist; check the version."""
        ks = self.config.keyspace
        keyspace = self.session.execute(
            "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = %s", (ks,)
        ).one()
        if keyspace is None:
            try:
                self.session.execute(
                    f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {self._replication()}"
                )
            except Exception as exc:
                raise StoreError(
                    f"{_redact(self.url)}: keyspace {ks} does not exist and this role cannot"
                    f" create it ({type(exc).__name__}); ask an admin to run"
                    f" `ancho user add`"
                ) from None
        existing = {
            row.table_name
            for row in self.session.execute(
                "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (ks,)
            )
        }
        missing = [t for t in _TABLES if t not in existing]
        for table in missing:
            try:
                self.session.execute(_TABLES[table].format(ks=ks))
            except Exception as exc:
                raise StoreError(
                    f"{_redact(self.url)}: table {ks}.{table} is missing and this role cannot"
                    f" create it ({type(exc).__name__}); an admin opening this store with"
                    f" this version of Ancho creates it"
                ) from None
        row = self.session.execute(
            f"SELECT value FROM {ks}.meta WHERE key = 'schema_version'"
        ).one()
        if row is None:
            self.session.execute(
                f"INSERT INTO {ks}.meta (key, value) VALUES ('schema_version', %s)",
                (str(SCHEMA_VERSION),),
            )
        elif int(row.value) > SCHEMA_VERSION:
            raise StoreError(
                f"{_redact(self.url)}: keyspace {ks} has schema version {row.value}, newer"
                f" than this Ancho understands ({SCHEMA_VERSION}); upgrade Ancho"
            )
        elif int(row.value) < SCHEMA_VERSION:  # every table of this version exists now
            self.session.execute(
                f"UPDATE {ks}.meta SET value = %s WHERE key = 'schema_version'",
                (str(SCHEMA_VERSION),),
            )
            self._upgrade_user_keyspaces()

    def _upgrade_user_keyspaces(self) -> None:
        """Bring the keyspaces of this store's users (made by ``ancho user add``) up to this
        schema: when an admin store is upgraded, it creates the tables they lack too.

        Users' roles cannot create tables, so without this an older user keyspace would
        refuse its user after an upgrade until an admin opened that keyspace. Runs once,
        when this keyspace's schema version goes up; a keyspace it cannot fix is logged.
        """
        from cassandra.query import ValueSequence

        ks = self.config.keyspace
        others: set[str] = set()
        for row in self.session.execute(f"SELECT store FROM {ks}.users"):
            if not row.store:
                continue
            try:
                other = CassandraURL.parse(row.store).keyspace
            except StoreError:
                continue
            if other != ks:
                others.add(other)
        if not others:
            return
        tables: dict[str, set[str]] = {}
        for row in self.session.execute(
            "SELECT keyspace_name, table_name FROM system_schema.tables WHERE keyspace_name IN %s",
            (ValueSequence(sorted(others)),),
        ):
            tables.setdefault(row.keyspace_name, set()).add(row.table_name)
        for other, present in sorted(tables.items()):
            missing = [t for t in _TABLES if t not in present]
            try:
                for table in missing:
                    self.session.execute(_TABLES[table].format(ks=other))
                if missing:
                    self.session.execute(
                        f"INSERT INTO {other}.meta (key, value) VALUES ('schema_version', %s)",
                        (str(SCHEMA_VERSION),),
                    )
                    log.info("keyspace %s: created tables %s", other, ", ".join(missing))
            except Exception as exc:
                log.warning(
                    "keyspace %s lacks tables %s and this role cannot create them (%s)",
                    other, ", ".join(missing), type(exc).__name__,
                )  # fmt: skip

    def _prepare(self) -> None:
        ks = self.config.keyspace
        p = self.session.prepare
        self._insert_result = p(
            f"INSERT INTO {ks}.results (run_id, bucket, sequence, status, outputs, error,"
            " attempt, duration_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self._select_results = p(
            f"SELECT sequence, status, outputs, error, attempt, duration_s FROM {ks}.results"
            " WHERE run_id = ? AND bucket = ? AND sequence >= ? AND sequence < ?"
        )
        self._select_status = p(
            f"SELECT status, attempt FROM {ks}.results WHERE run_id = ? AND bucket = ?"
        )
        self._select_run = p(f"SELECT {_RUN_COLUMNS} FROM {ks}.runs WHERE id = ?")
        self._insert_event = p(
            f"INSERT INTO {ks}.events (run_id, id, ts, source, level, message)"
            " VALUES (?, ?, ?, ?, ?, ?)"
        )
        for stmt in (self._insert_result, self._insert_event):
            stmt.is_idempotent = True

    def _ks(self) -> str:
        return self.config.keyspace

    def _run_sql(self, query: str, params: Any = None) -> Any:
        try:
            return self.session.execute(query, params)
        except Exception as exc:
            raise _describe_driver_error(self.url, exc) from None

    def close(self) -> None:
        """Shut the driver down."""
        self._cluster.shutdown()

    # --- runs -------------------------------------------------------------------------
    def create_run(self, run: RunRecord) -> None:
        """Insert a new run."""
        inserted = self._run_sql(
            f"INSERT INTO {self._ks()}.runs ({_RUN_COLUMNS}) VALUES"
            " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " IF NOT EXISTS",
            (run.id, run.name, run.owner, run.state, json.dumps(run.spec), run.seed,
             run.sequences, None if run.outputs is None else json.dumps(run.outputs), run.ok,
             run.failed, run.running, run.reason, run.created_at or time.time(),
             run.started_at, run.finished_at, run.kill_requested, run.next_index),
        )  # fmt: skip
        if not inserted.was_applied:
            raise StoreError(f"{_redact(self.url)}: a run {run.id!r} exists already")

    def get_run(self, run_id: str) -> RunRecord:
        """The run, or NotFound."""
        row = self._run_sql(self._select_run, (run_id,)).one()
        if row is None:
            raise NotFound(f"no run {run_id!r} in {_redact(self.url)}")
        return _run(row)

    def list_runs(self, owner: str | None = None) -> list[RunRecord]:
        """Runs, newest first (a small table: read whole)."""
        runs = [_run(r) for r in self._run_sql(f"SELECT {_RUN_COLUMNS} FROM {self._ks()}.runs")]
        if owner is not None:
            runs = [r for r in runs if r.owner == owner]
        return sorted(runs, key=lambda r: r.created_at, reverse=True)

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set some fields; NotFound if the run does not exist (IF EXISTS)."""
        unknown = set(fields) - _RUN_FIELDS
        if unknown:
            raise ValueError(f"not run fields: {sorted(unknown)}")
        if "outputs" in fields and fields["outputs"] is not None:
            fields["outputs"] = json.dumps(fields["outputs"])
        if "kill_requested" in fields:
            fields["kill_requested"] = bool(fields["kill_requested"])
        cols = ", ".join(f"{k} = %s" for k in fields)
        result = self._run_sql(
            f"UPDATE {self._ks()}.runs SET {cols} WHERE id = %s IF EXISTS",
            (*fields.values(), run_id),
        )
        if not result.was_applied:
            raise NotFound(f"no run {run_id!r} in {_redact(self.url)}")

    def register_outputs(self, run_id: str, names: Sequence[str]) -> list[str]:
        """First writer wins (a lightweight transaction)."""
        self.get_run(run_id)  # an LWT on a missing row would create it
        self._run_sql(
            f"UPDATE {self._ks()}.runs SET outputs = %s WHERE id = %s IF outputs = null",
            (json.dumps(list(names)), run_id),
        )
        recorded = self.get_run(run_id).outputs
        if recorded is None:
            raise NotFound(f"no run {run_id!r} in {_redact(self.url)}")
        return recorded

    # --- results ----------------------------------------------------------------------
    def write_results(self, run_id: str, results: Sequence[SequenceResult]) -> None:
        """Unlogged batches of rows of one partition, sent with bounded concurrency."""
        from cassandra.query import UNSET_VALUE, BatchStatement, BatchType

        by_bucket: dict[int, list[SequenceResult]] = {}
        for r in results:
            by_bucket.setdefault(r.sequence // BUCKET, []).append(r)
        statements = []
        insert = self._insert_result
        for bucket, rows in by_bucket.items():
            for i in range(0, len(rows), _BATCH_ROWS):
                batch = BatchStatement(BatchType.UNLOGGED)
                for r in rows[i : i + _BATCH_ROWS]:
                    # UNSET, not null: a null would write a tombstone per ok row.
                    error = UNSET_VALUE if r.error is None else json.dumps(r.error)
                    batch.add(insert, (run_id, bucket, r.sequence, r.status,
                                       json.dumps(r.outputs, separators=(",", ":")), error,
                                       r.attempt, r.duration_s))  # fmt: skip
                batch.is_idempotent = True
                statements.append((batch, ()))
        self._execute_all(statements, _CONCURRENCY)

    def _execute_all(self, statements: Sequence[tuple[Any, Any]], concurrency: int) -> None:
        """Run writes, at most ``concurrency`` in flight, each answered within
        ``ANSWER_TIMEOUT_S`` or a StoreError. The driver's ``execute_concurrent`` waits
        without a limit, and a request on a node that dies under it may never be
        answered (an executor hung so for minutes while a ring node restarted)."""
        for i in range(0, len(statements), concurrency):
            waits = []
            for statement, params in statements[i : i + concurrency]:
                answered, failure = threading.Event(), list[Any]()
                try:
                    future = self.session.execute_async(statement, params)
                except Exception as exc:
                    raise _describe_driver_error(self.url, exc) from None
                future.add_callbacks(_setter(answered), _setter(answered, failure))
                waits.append((answered, failure))
            for answered, failure in waits:
                if not answered.wait(ANSWER_TIMEOUT_S):
                    raise StoreError(f"{_redact(self.url)}: Cassandra gave no answer to a write"
                                     f" in {ANSWER_TIMEOUT_S:g} s")  # fmt: skip
                if failure:
                    raise _describe_driver_error(self.url, failure[0])

    def iter_results(
        self, run_id: str, start: int = 0, stop: int | None = None
    ) -> Iterator[SequenceResult]:
        """Results in sequence order: bucket by bucket, each read in pages."""
        if stop is None:
            stop = self.get_run(run_id).sequences
        self._select_results.fetch_size = _FETCH
        for bucket in range(start // BUCKET, (stop - 1) // BUCKET + 1 if stop > 0 else 0):
            lo = max(start, bucket * BUCKET)
            hi = min(stop, (bucket + 1) * BUCKET)
            rows = self._run_sql(self._select_results, (run_id, bucket, lo, hi))
            for row in rows:
                yield decode_result(tuple(row))

    def count_results(self, run_id: str) -> Counts:
        """Counts by status and attempt, reading every bucket's status column concurrently."""
        from cassandra.concurrent import execute_concurrent_with_args

        sequences = self.get_run(run_id).sequences
        buckets = [(run_id, b) for b in range((sequences + BUCKET - 1) // BUCKET)]
        counts = Counts()
        self._select_status.fetch_size = _FETCH
        try:
            outcome = execute_concurrent_with_args(
                self.session, self._select_status, buckets, concurrency=_CONCURRENCY,
                results_generator=True,
            )  # fmt: skip
            for ok, rows in outcome:
                if not ok:
                    raise rows
                for status, attempt in rows:
                    if status == "ok":
                        counts.ok += 1
                    else:
                        counts.failed += 1
                    counts.by_attempt[attempt] = counts.by_attempt.get(attempt, 0) + 1
        except StoreError:
            raise
        except Exception as exc:
            raise _describe_driver_error(self.url, exc) from None
        return counts

    # --- summaries, events, batches, meta ----------------------------------------------
    def put_summary(self, run_id: str, summary: dict[str, Any]) -> None:
        """Store the summary (strict JSON)."""
        self._run_sql(
            f"INSERT INTO {self._ks()}.summaries (run_id, summary) VALUES (%s, %s)",
            (run_id, json.dumps(summary, allow_nan=False)),
        )

    def get_summary(self, run_id: str) -> dict[str, Any] | None:
        """The stored summary, if any."""
        row = self._run_sql(
            f"SELECT summary FROM {self._ks()}.summaries WHERE run_id = %s", (run_id,)
        ).one()
        if row is None:
            return None
        summary: dict[str, Any] = json.loads(row.summary)
        return summary

    #: Ids are the writer's clock (in µs x 1000): a line written from a machine whose
    #: clock is behind, or whose write took a while, lands below lines already read.
    late_event_ids = int(LATE_EVENT_S * 1_000_000) * 1000

    def append_events(self, run_id: str, events: Iterable[tuple[str, str, str]]) -> None:
        """Append log lines; ids are microsecond timestamps with a per-process counter."""
        now = time.time()
        for source, level, message in events:
            with self._lock:
                event_id = int(now * 1_000_000) * 1000 + next(self._event_ids) % 1000
            self._run_sql(self._insert_event, (run_id, event_id, now, source, level, message))

    def iter_events(self, run_id: str, after: int = 0) -> list[Event]:
        """Log lines after id ``after``."""
        rows = self._run_sql(
            f"SELECT id, run_id, ts, source, level, message FROM {self._ks()}.events"
            " WHERE run_id = %s AND id > %s",
            (run_id, after),
        )
        return [Event(*row) for row in rows]

    def put_partial(self, run_id: str, block: int, partial: Mapping[str, Any]) -> None:
        """Store (or replace) a block's partial summary: an idempotent upsert."""
        data = json.dumps(partial, separators=(",", ":"), allow_nan=False)
        self._run_sql(
            f"INSERT INTO {self._ks()}.partials (run_id, block, data) VALUES (%s, %s, %s)",
            (run_id, block, data),
        )

    def list_partials(self, run_id: str) -> dict[int, dict[str, Any]]:
        """The run's partial summaries by block."""
        rows = self._run_sql(
            f"SELECT block, data FROM {self._ks()}.partials WHERE run_id = %s", (run_id,)
        )
        return {int(row.block): json.loads(row.data) for row in rows}

    def put_live(self, run_id: str, live: Mapping[str, Any]) -> None:
        """Store the run's live statistics."""
        data = json.dumps(live, separators=(",", ":"), allow_nan=False)
        self._run_sql(f"INSERT INTO {self._ks()}.live (run_id, data) VALUES (%s, %s)",
                      (run_id, data))  # fmt: skip

    def get_live(self, run_id: str) -> dict[str, Any] | None:
        """The run's latest live statistics."""
        row = self._run_sql(
            f"SELECT data FROM {self._ks()}.live WHERE run_id = %s", (run_id,)
        ).one()
        return None if row is None else dict(json.loads(row.data))

    def truncate_run(self, run_id: str, sequences: int, blocks: int) -> None:
        """Drop results from ``sequences`` on (a range delete in the first bucket, whole
        partitions after it) and partials from ``blocks`` on."""
        ks = self._ks()
        total = self.get_run(run_id).sequences
        first = sequences // BUCKET
        self._run_sql(
            f"DELETE FROM {ks}.results WHERE run_id = %s AND bucket = %s AND sequence >= %s",
            (run_id, first, sequences),
        )
        for bucket in range(first + 1, (total + BUCKET - 1) // BUCKET):
            self._run_sql(f"DELETE FROM {ks}.results WHERE run_id = %s AND bucket = %s",
                          (run_id, bucket))  # fmt: skip
        self._run_sql(f"DELETE FROM {ks}.partials WHERE run_id = %s AND block >= %s",
                      (run_id, blocks))  # fmt: skip

    def put_batch(self, batch: BatchRecord) -> None:
        """Remember a launched batch."""
        self._run_sql(
            f"INSERT INTO {self._ks()}.batches (run_id, task_id, start, stop, attempt,"
            " executor_id, agent_id) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (batch.run_id, batch.task_id, batch.start, batch.stop, batch.attempt,
             batch.executor_id, batch.agent_id),
        )  # fmt: skip

    def delete_batch(self, run_id: str, task_id: str) -> None:
        """Forget a finished batch."""
        self._run_sql(
            f"DELETE FROM {self._ks()}.batches WHERE run_id = %s AND task_id = %s",
            (run_id, task_id),
        )

    def list_batches(self, run_id: str) -> list[BatchRecord]:
        """Batches in flight."""
        rows = self._run_sql(
            f"SELECT run_id, task_id, start, stop, attempt, executor_id, agent_id"
            f" FROM {self._ks()}.batches WHERE run_id = %s",
            (run_id,),
        )
        return [BatchRecord(*row) for row in rows]

    # --- experiments -------------------------------------------------------------------
    def create_experiment(self, experiment: ExperimentRecord) -> None:
        """Insert a new experiment."""
        e = experiment
        inserted = self._run_sql(
            f"INSERT INTO {self._ks()}.experiments ({_EXPERIMENT_COLUMNS})"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) IF NOT EXISTS",
            (e.id, e.name, e.owner, json.dumps(e.spec), json.dumps(e.points),
             json.dumps(e.runs), e.created_at),
        )  # fmt: skip
        if not inserted.was_applied:
            raise StoreError(f"{_redact(self.url)}: an experiment {e.id!r} exists already")

    def get_experiment(self, experiment_id: str) -> ExperimentRecord:
        """The experiment, or NotFound."""
        row = self._run_sql(
            f"SELECT {_EXPERIMENT_COLUMNS} FROM {self._ks()}.experiments WHERE id = %s",
            (experiment_id,),
        ).one()
        if row is None:
            raise NotFound(f"no experiment {experiment_id!r} in {_redact(self.url)}")
        return _experiment(row)

    def list_experiments(self, owner: str | None = None) -> list[ExperimentRecord]:
        """Experiments, newest first (a small table: read whole)."""
        rows = self._run_sql(f"SELECT {_EXPERIMENT_COLUMNS} FROM {self._ks()}.experiments")
        found = [e for e in map(_experiment, rows) if owner is None or e.owner == owner]
        return sorted(found, key=lambda e: e.created_at, reverse=True)

    # --- users ---------------------------------------------------------------------------
    def put_user(self, user: UserRecord) -> None:
        """Insert or replace a user."""
        self._run_sql(
            f"INSERT INTO {self._ks()}.users (name, token_sha256, store, created_at, revoked)"
            " VALUES (%s, %s, %s, %s, %s)",
            (user.name, user.token_sha256, user.store, user.created_at, user.revoked),
        )

    def list_users(self) -> list[UserRecord]:
        """Users by name."""
        rows = self._run_sql(
            f"SELECT name, token_sha256, store, created_at, revoked FROM {self._ks()}.users"
        )
        return sorted((UserRecord(*r) for r in rows), key=lambda u: u.name)

    # --- models ------------------------------------------------------------------------
    def put_model(self, digest: str, data: bytes) -> None:
        """Keep a model tarball in rows of at most 1 MiB; ``chunks``, written last, marks
        it complete. A model stored completely before is not written again."""
        check_model_digest(digest, data)
        ks = self._ks()
        done = self._run_sql(
            f"SELECT chunks FROM {ks}.models WHERE digest = %s LIMIT 1", (digest,)
        ).one()
        if done is not None and done.chunks is not None:
            return
        pieces = [
            (digest, i, data[off : off + MODEL_CHUNK])
            for i, off in enumerate(range(0, len(data), MODEL_CHUNK))
        ]
        try:
            insert = self.session.prepare(
                f"INSERT INTO {ks}.models (digest, chunk, data) VALUES (?, ?, ?)"
            )
        except Exception as exc:
            raise _describe_driver_error(self.url, exc) from None
        self._execute_all([(insert, piece) for piece in pieces], 4)
        self._run_sql(
            f"INSERT INTO {ks}.models (digest, chunks, size) VALUES (%s, %s, %s)",
            (digest, len(pieces), len(data)),
        )

    def get_model(self, digest: str) -> bytes:
        """The model tarball (read a few rows per page), or NotFound."""
        from cassandra.query import SimpleStatement

        query = SimpleStatement(
            f"SELECT chunk, data, chunks FROM {self._ks()}.models WHERE digest = %s",
            fetch_size=4,
        )
        parts: list[bytes] = []
        chunks = None
        for row in self._run_sql(query, (digest,)):
            chunks = row.chunks
            if row.chunk is not None:
                if row.chunk != len(parts):
                    break
                parts.append(row.data or b"")
        if chunks is None:  # absent, or its upload did not finish
            raise NotFound(f"no model sha256:{digest} in {_redact(self.url)}")
        if len(parts) != chunks:
            raise StoreError(
                f"{_redact(self.url)}: model sha256:{digest} has {len(parts)} of its {chunks} parts"
            )
        return b"".join(parts)

    def provision_user(self, name: str, password: str) -> str:
        """Create the user's keyspace, tables and login role with SELECT and MODIFY on that
        keyspace only; return the user's store URL. Needs an admin (superuser) store."""
        keyspace = f"ancho_{name}"
        self._run_sql(
            f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {self._replication()}"
        )
        admin_url = self.config.with_credentials(
            self.config.username or "", self.config.password or "", keyspace
        )
        CassandraStore(admin_url).close()  # creates the tables as the admin
        exists = self._run_sql("SELECT role FROM system_auth.roles WHERE role = %s", (name,))
        verb = "ALTER" if exists.one() else "CREATE"
        self._run_sql(f"{verb} ROLE {name} WITH PASSWORD = %s AND LOGIN = true", (password,))
        for permission in ("SELECT", "MODIFY"):
            self._run_sql(f"GRANT {permission} ON KEYSPACE {keyspace} TO {name}")
        return self.config.with_credentials(name, password, keyspace)

    def disable_role(self, name: str) -> None:
        """Stop a user's role from logging in (their data stays)."""
        self._run_sql(f"ALTER ROLE {name} WITH LOGIN = false")

    # --- per-run roles (scheduler.credentials) ---------------------------------------
    def create_run_role(self, role: str, password: str, keyspace: str) -> None:
        """Create the login role ``role`` (or give an existing one ``password``) with only
        what a run's executors and summary need in ``keyspace``: :data:`RUN_GRANTS`.

        Needs a role that may create roles and grant on that keyspace (an admin).
        """
        if not _NAME.match(role) or not _NAME.match(keyspace):
            raise StoreError(f"role {role!r} / keyspace {keyspace!r}: not plain names")
        exists = self._run_sql("SELECT role FROM system_auth.roles WHERE role = %s", (role,))
        # An existing role is re-keyed (a scheduler restarted mid-run knows no password).
        verb = "ALTER" if exists.one() else "CREATE"
        for wait in (*_REKEY_WAITS, None):
            try:
                self._run_sql(f"{verb} ROLE {role} WITH PASSWORD = %s AND LOGIN = true",
                              (password,))  # fmt: skip
                break
            except StoreError as exc:
                # Cassandra 5 refuses a role's password change within 5 s of the last one.
                if wait is None or "can only be changed every" not in exc.message:
                    raise
                time.sleep(wait)
        for permission, tables in RUN_GRANTS:
            for table in tables:
                self._run_sql(f"GRANT {permission} ON TABLE {keyspace}.{table} TO {role}")

    def drop_role(self, role: str) -> None:
        """Drop a login role (a run's): it cannot log in any more."""
        if not _NAME.match(role):
            raise StoreError(f"role {role!r}: not a plain name")
        self._run_sql(f"DROP ROLE IF EXISTS {role}")

    def list_roles(self, prefix: str) -> list[str]:
        """Names of the roles that start with ``prefix`` (needs an admin)."""
        rows = self._run_sql("SELECT role FROM system_auth.roles")
        return sorted(r.role for r in rows if str(r.role).startswith(prefix))

    def get_meta(self, key: str) -> str | None:
        """A framework-wide value."""
        row = self._run_sql(f"SELECT value FROM {self._ks()}.meta WHERE key = %s", (key,)).one()
        return None if row is None else str(row.value)

    def set_meta(self, key: str, value: str | None) -> None:
        """Set or delete a framework-wide value."""
        if value is None:
            self._run_sql(f"DELETE FROM {self._ks()}.meta WHERE key = %s", (key,))
        else:
            self._run_sql(
                f"INSERT INTO {self._ks()}.meta (key, value) VALUES (%s, %s)", (key, value)
            )


def _experiment(row: Any) -> ExperimentRecord:
    points, runs = json.loads(row.points), json.loads(row.runs)
    return ExperimentRecord(
        row.id, row.name, row.owner, json.loads(row.spec), points, runs, row.created_at
    )


def _run(row: Any) -> RunRecord:
    return RunRecord(
        id=row.id,
        name=row.name,
        spec=json.loads(row.spec),
        seed=row.seed,
        sequences=row.sequences,
        state=row.state,
        owner=row.owner,
        outputs=None if row.outputs is None else json.loads(row.outputs),
        ok=row.ok or 0,
        failed=row.failed or 0,
        running=row.running or 0,
        reason=row.reason,
        created_at=row.created_at or 0.0,
        started_at=row.started_at,
        finished_at=row.finished_at,
        kill_requested=bool(row.kill_requested),
        next_index=row.next_index or 0,
    )

"""The summary job of a run: stored results → Parquet → Spark statistics → the store.

Spark runs in a worker process of its own (``python -m scheduler.summary_worker``),
started when a run starts so the JVM's start (a few seconds, plus ~5 s of class loading
on its first job) overlaps the run. The worker lives in its own session at the lowest
priority: Linux schedules sessions (autogroups) fairly against each other, so only a
separate session with a low autogroup priority keeps Spark's start from taking cores
away from the executors.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from ancho.model import materialize, resolve
from ancho.parquet import write_results_parquet
from ancho.requirements import activate, install
from ancho.store import Store, open_store

from .framework import SummaryOutcome

log = logging.getLogger("ancho.scheduler")


def summarize_run(
    store: Store, run_id: str, spark: Any, work_dir: Path | None, cache_dir: Path
) -> SummaryOutcome:
    """Compute and store one run's summary with a Spark session; return final counts."""
    from ancho.cassandra_spark import results_frame
    from ancho.store.cassandra import CassandraStore
    from ancho.summary import SummaryError, compute_summary

    t0 = time.perf_counter()
    run = store.get_run(run_id)
    counts = store.count_results(run_id)
    t_count = time.perf_counter()
    outputs = list(run.outputs or [])
    model = run.spec["model"]
    params = dict(run.spec.get("parameters", {}))
    custom = None
    if model.get("summary"):
        model_dir = materialize(model["source"], cache_dir / "models", store)
        if model.get("requirements"):
            activate(install(model_dir / model["requirements"], cache_dir))
        custom = _fresh_import(model_dir, model["summary"])
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="ancho-summary-") as tmp:
        source: Any
        if isinstance(store, CassandraStore):
            # Spark reads Cassandra itself, as the run owner's role.
            source = results_frame(spark, store, run_id)
        else:
            source = Path(tmp) / "results.parquet"
            store.export_ok_parquet(run_id, str(source))
        t_export = time.perf_counter()
        try:
            summary = compute_summary(spark, source, outputs, params=params, custom=custom)
        except SummaryError as exc:
            return SummaryOutcome(counts.ok, counts.failed, exc.format_message())
    store.put_summary(run_id, summary)
    log.info(
        "summary of run %s: count %.2f s, export %.2f s, spark %.2f s",
        run_id, t_count - t0, t_export - t_count, time.perf_counter() - t_export,
    )  # fmt: skip
    return SummaryOutcome(counts.ok, counts.failed)


def rehearse(spark: Any, work_dir: Path | None) -> None:
    """Summarise a tiny made-up run once, so the JVM loads and compiles the summary's code
    (about 5 s on a cold JVM) before a real run needs it."""
    from ancho.results import SequenceResult
    from ancho.summary import compute_summary

    rows = [SequenceResult(i, "ok", {"x": i / 7, "k": i, "b": i % 2 == 0}) for i in range(64)]
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="ancho-warmup-") as tmp:
        path = Path(tmp) / "warmup.parquet"
        write_results_parquet(rows, path, ok_only=True)
        compute_summary(spark, path, ["x", "k", "b"])


def _fresh_import(model_dir: Path, entrypoint: str) -> Any:
    """Import the model's ``summarize`` afresh (another run may use the same module name)."""
    module = entrypoint.partition(":")[0].split(".")[0]
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        del sys.modules[name]
    return resolve(model_dir, entrypoint)


class SummaryJob:
    """Callable ``job(run_id) -> SummaryOutcome`` backed by one Spark worker process."""

    def __init__(
        self,
        store: Store,
        master: str = "local[*]",
        work_dir: Path | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.store = store
        self.master = master
        self.work_dir = work_dir
        self.cache_dir = cache_dir or Path(tempfile.gettempdir()) / "ancho-cache"
        self._proc: subprocess.Popen[str] | None = None
        self._log: IO[bytes] | None = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Start the worker (and so Spark) now, in the background."""
        with self._lock:
            self._ensure()

    def _ensure(self) -> subprocess.Popen[str]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        log_dir = self.work_dir or Path(tempfile.gettempdir())
        log_dir.mkdir(parents=True, exist_ok=True)
        self._log = (log_dir / "summary-worker.log").open("ab")
        cmd = [sys.executable, "-m", "scheduler.summary_worker", "--master", self.master,
               "--cache-dir", str(self.cache_dir)]  # fmt: skip
        if self.work_dir is not None:
            cmd += ["--work-dir", str(self.work_dir)]
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            start_new_session=True,
        )
        return self._proc

    def __call__(self, run_id: str) -> SummaryOutcome:
        with self._lock:
            proc = self._ensure()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                # A server's store routes runs to their owner's store: the worker gets that.
                url_for_run = getattr(self.store, "url_for_run", None)
                url = url_for_run(run_id) if url_for_run else self.store.url
                proc.stdin.write(json.dumps({"run_id": run_id, "store": url}) + "\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
            except (BrokenPipeError, OSError):
                line = ""
            if not line:
                raise RuntimeError(f"the summary worker exited: {self._tail()}")
            reply = json.loads(line)
        return SummaryOutcome(int(reply["ok"]), int(reply["failed"]), reply.get("error"))

    def _tail(self) -> str:
        if self.work_dir is None:
            return "see its log"
        path = self.work_dir / "summary-worker.log"
        try:
            lines = path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " | ".join(lines[-3:]) or "no log"

    def close(self) -> None:
        """Stop the worker (it stops Spark)."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None:
                if proc.stdin is not None:
                    proc.stdin.close()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                if proc.stdout is not None:
                    proc.stdout.close()
            if self._log is not None:
                self._log.close()
                self._log = None


def open_worker_store(url: str, cache: dict[str, Store]) -> Store:
    """The worker's store for a URL (opened once per URL)."""
    if url not in cache:
        cache[url] = open_store(url)
    return cache[url]

"""The summary job of a run: stored results → Parquet → Spark statistics → the store.

Spark runs in a worker process of its own (``python -m scheduler.summary_worker``),
started when a run starts so the JVM's start (a few seconds, plus ~5 s of class loading
on its first job) overlaps the run. The worker lives in its own session at the lowest
priority: Linux schedules sessions (autogroups) fairly against each other, so only a
separate session with a low autogroup priority keeps Spark's start from taking cores
away from the executors.

The worker serves every user's runs, so it runs only Ancho's code: the built-in
statistics. A model's custom ``summarize`` runs in a fresh, confined process of its own
for each run (:mod:`ancho.custom_summary`), which reads a Parquet export of the run's ok
sequences made here and holds no store credential; the model's requirements are
installed by a confined pip (:mod:`ancho.requirements`) and never imported here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from ancho.errors import AnchoError
from ancho.model import materialize
from ancho.parquet import write_results_parquet
from ancho.requirements import install
from ancho.store import Store, open_store

log = logging.getLogger("ancho.scheduler")


def summarize_run(
    store: Store,
    run_id: str,
    spark: Any,
    work_dir: Path | None,
    cache_dir: Path,
    master: str = "local[*]",
    *,
    builtin: bool = False,
    custom: bool = True,
) -> tuple[dict[str, Any], str | None]:
    """The Spark parts of one run's summary: the built-in statistics (``builtin``, what
    ``ancho summary --recompute`` shows) and the model's custom summary (``custom``, when
    the spec names one). Returns ``({"outputs"?, "custom"?}, error)``; nothing is stored.

    A custom summary that cannot run (its model or requirements fail to load, its process
    dies, times out or sends something invalid) gives ``custom`` = ``{"error": reason}``,
    and the reason as the error.
    """
    from ancho.cassandra_spark import results_frame
    from ancho.custom_summary import CustomSummaryFailed, scratch_folder
    from ancho.store.cassandra import CassandraStore
    from ancho.summary import SummaryError, compute_summary

    t0 = time.perf_counter()
    run = store.get_run(run_id)
    outputs = list(run.outputs or [])
    params = dict(run.spec.get("parameters", {}))
    custom = custom and bool(run.spec["model"].get("summary"))
    result: dict[str, Any] = {}
    error = None
    with contextlib.ExitStack() as stack:
        tmp = Path(
            stack.enter_context(tempfile.TemporaryDirectory(dir=work_dir, prefix="ancho-summary-"))
        )
        # The custom summary's own process gets the export in a folder of its own.
        scratch = stack.enter_context(scratch_folder()) if custom else None
        source: Any
        exported: Path | None = None
        if isinstance(store, CassandraStore):
            # Spark reads Cassandra itself, as the run's role.
            source = results_frame(spark, store, run_id)
        else:
            source = exported = (scratch / "input" if scratch else tmp) / "results.parquet"
            store.export_ok_parquet(run_id, str(source))
        t_export = time.perf_counter()
        if builtin:
            try:
                result["outputs"] = compute_summary(spark, source, outputs, params=params)[
                    "outputs"
                ]
            except SummaryError as exc:
                return result, exc.format_message()
        t_stats = time.perf_counter()
        if scratch is not None:
            try:
                result["custom"] = _custom(store, run, source, exported, scratch, cache_dir,
                                           master)  # fmt: skip
            except (AnchoError, CustomSummaryFailed) as exc:
                error = exc.format_message() if isinstance(exc, AnchoError) else str(exc)
                result["custom"] = {"error": error}
    log.info(
        "spark summary of run %s: export %.2f s, statistics %.2f s, custom %.2f s",
        run_id, t_export - t0, t_stats - t_export, time.perf_counter() - t_stats,
    )  # fmt: skip
    return result, error


def _custom(store: Store, run: Any, source: Any, exported: Path | None, scratch: Path,
            cache_dir: Path, master: str) -> dict[str, Any]:  # fmt: skip
    """The run's custom summary, from a process of its own (see the module docstring)."""
    from pyspark.sql import functions as F

    from ancho.custom_summary import CustomRequest, CustomSummaryFailed, run_custom_summary

    model = run.spec["model"]
    model_dir = materialize(model["source"], cache_dir / "models", store)
    env_dir = None
    if model.get("requirements"):
        env_dir = install(model_dir / model["requirements"], cache_dir)
    if exported is None:  # a DataFrame read from Cassandra: the process gets a file
        exported = scratch / "input" / "results.parquet"
        try:
            source.filter(F.col("status") == "ok").write.parquet(str(exported))
        except Exception as exc:  # Spark's and the connector's errors have no common base
            raise CustomSummaryFailed(
                f"custom summary: exporting the results failed: {exc}"
            ) from exc
    request = CustomRequest(
        model_dir=str(model_dir.resolve()),
        entrypoint=model["summary"],
        requirements_dir=str(env_dir) if env_dir else None,
        params=dict(run.spec.get("parameters", {})),
        outputs=list(run.outputs or []),
        parquet=str(exported),
        master=master,
    )
    return run_custom_summary(request, scratch)


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


class SummaryJob:
    """The Spark parts of summaries, from one worker process: ``job(run_id, url)`` gives
    a run's custom summary, :meth:`recompute` its built-in statistics. The worker (and
    its JVM) starts on the first request, or on :meth:`warm_up`."""

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
        # Store URLs come per request on stdin; ANCHO_STORE (the server's, an admin's
        # password with Cassandra) is not the worker's to inherit.
        env = {k: v for k, v in os.environ.items() if k != "ANCHO_STORE"}
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            start_new_session=True,
            env=env,
        )
        return self._proc

    def __call__(
        self, run_id: str, store_url: str | None = None
    ) -> tuple[dict[str, Any], str | None]:
        """The run's custom summary and why it failed (or None)."""
        result, error = self._ask(run_id, store_url, builtin=False)
        return dict(result.get("custom", {})), error

    def recompute(self, run_id: str, store_url: str | None = None) -> dict[str, Any]:
        """The built-in statistics recomputed from every stored result (``outputs``)."""
        result, error = self._ask(run_id, store_url, builtin=True)
        if error is not None:
            raise RuntimeError(f"the summary job failed: {error}")
        return dict(result["outputs"])

    def _ask(self, run_id: str, store_url: str | None, *,
             builtin: bool) -> tuple[dict[str, Any], str | None]:  # fmt: skip
        with self._lock:
            proc = self._ensure()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                # The scheduler passes the URL with the run's own short-lived role; else a
                # server's store routes runs to their owner's store: the worker gets that.
                url = store_url
                if url is None:
                    url_for_run = getattr(self.store, "url_for_run", None)
                    url = url_for_run(run_id) if url_for_run else self.store.url
                request = {"run_id": run_id, "store": url, "builtin": builtin,
                           "custom": not builtin}  # fmt: skip
                proc.stdin.write(json.dumps(request) + "\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
            except (BrokenPipeError, OSError):
                line = ""
            if not line:
                raise RuntimeError(f"the summary worker exited: {self._tail()}")
            reply = json.loads(line)
        return dict(reply.get("summary", {})), reply.get("error")

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


def open_worker_store(url: str, cache: dict[str, Store], keep: int = 4) -> Store:
    """The worker's store for a URL, kept open for the next requests on the same URL.

    Only the ``keep`` most recently used stay open (a run's own role makes a URL that
    serves one run only); the others are closed.
    """
    store = cache.pop(url, None) or open_store(url)
    cache[url] = store  # the most recent last
    while len(cache) > keep:
        cache.pop(next(iter(cache))).close()
    return store

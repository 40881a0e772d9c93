"""The summary job of a run: stored results → Parquet → Spark statistics → the store.

On one machine Spark runs ``local[*]`` in the scheduler's process; its JVM is started
ahead of time (:meth:`SummaryJob.warm_up`) so its start overlaps the run's sequences.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from ancho.model import materialize, resolve
from ancho.parquet import write_results_parquet
from ancho.store import Store

from .framework import SummaryOutcome

log = logging.getLogger("ancho.scheduler")


class SummaryJob:
    """Callable that computes and stores a run's summary; returns the final counts."""

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
        self._warm = threading.Lock()
        self._warmed = False

    def _spark(self) -> Any:
        from ancho.spark import spark_session  # late: importing pyspark costs ~0.3 s

        with self._warm:
            session = spark_session(self.master)
            if not self._warmed:
                self._warmed = True
                self._rehearse(session)
            return session

    def _rehearse(self, session: Any) -> None:
        """Summarise a tiny made-up run once: a cold JVM spends ~5 s loading and compiling
        the summary's code on its first job; done during the run, that time is hidden."""
        from ancho.results import SequenceResult
        from ancho.summary import compute_summary

        rows = [SequenceResult(i, "ok", {"x": i / 7, "k": i, "b": i % 2 == 0}) for i in range(64)]
        with tempfile.TemporaryDirectory(dir=self.work_dir, prefix="ancho-warmup-") as tmp:
            path = Path(tmp) / "warmup.parquet"
            write_results_parquet(rows, path, ok_only=True)
            compute_summary(session, path, ["x", "k", "b"])

    def warm_up(self) -> threading.Thread:
        """Start the Spark session in the background; returns the thread."""

        def warm() -> None:
            # Linux applies nice() to the calling thread, and the JVM forked from it
            # inherits it: Spark's start then yields the cores to the executors.
            with contextlib.suppress(OSError):
                os.nice(19)
            try:
                self._spark()
            except Exception:
                log.exception("Spark did not start; the summary will try again")

        thread = threading.Thread(target=warm, name="ancho-spark-warmup", daemon=True)
        thread.start()
        return thread

    def __call__(self, run_id: str) -> SummaryOutcome:
        from ancho.summary import SummaryError, compute_summary

        run = self.store.get_run(run_id)
        counts = self.store.count_results(run_id)
        outputs = list(run.outputs or [])
        model = run.spec["model"]
        params = dict(run.spec.get("parameters", {}))
        custom = None
        if model.get("summary"):
            model_dir = materialize(model["source"], self.cache_dir / "models")
            custom = self._custom(model_dir, model["summary"])
        with tempfile.TemporaryDirectory(dir=self.work_dir, prefix="ancho-summary-") as tmp:
            path = Path(tmp) / "results.parquet"
            write_results_parquet(self.store.iter_results(run_id), path, ok_only=True)
            try:
                summary = compute_summary(
                    self._spark(), path, outputs, params=params, custom=custom
                )
            except SummaryError as exc:
                return SummaryOutcome(counts.ok, counts.failed, exc.format_message())
        self.store.put_summary(run_id, summary)
        return SummaryOutcome(counts.ok, counts.failed)

    @staticmethod
    def _custom(model_dir: Path, entrypoint: str) -> Any:
        """Import the model's ``summarize`` afresh (another run may use the same module name)."""
        module = entrypoint.partition(":")[0].split(".")[0]
        for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
            del sys.modules[name]
        return resolve(model_dir, entrypoint)

"""``ancho summary RUN --recompute``: the built-in statistics recomputed by the Spark job
from every stored result, as a check on the merged partial summaries.

The stored summary stays as it is: it is the one the contract makes bitwise
reproducible. The two agree to floating-point rounding in the moments and within the
contract's rank bound in the quantiles (``tests/test_recompute.py`` holds them to it).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import AnchoError
from .store import RunRecord, Store


def recompute_outputs(store: Store, run: RunRecord, job: Any = None) -> dict[str, Any]:
    """The run's per-output statistics from Spark (``job``: a running
    :class:`~scheduler.summary_job.SummaryJob`, else one is started for this, on
    ``ANCHO_SPARK_MASTER``: ``local[*]`` by default, or a Spark standalone cluster)."""
    from .extras import require

    if not run.done:
        raise AnchoError(
            f"run {run.id} is {run.state}: its summary can be recomputed once it has ended",
            http_status=409,
        )
    try:
        if job is not None:
            return dict(job.recompute(run.id))
        require("spark", "`ancho summary --recompute`", "Spark (on Java 17) reads every result.")
        from scheduler.summary_job import SummaryJob

        master = os.environ.get("ANCHO_SPARK_MASTER", "local[*]")
        with tempfile.TemporaryDirectory(prefix="ancho-recompute-") as tmp:
            job = SummaryJob(store, master, work_dir=Path(tmp), cache_dir=Path(tmp) / "cache")
            try:
                return dict(job.recompute(run.id, store.url))
            finally:
                job.close()
    except RuntimeError as exc:  # the worker died or the job failed: say so, no traceback
        raise AnchoError(f"recomputing the summary of run {run.id} failed: {exc}",
                         exit_code=1, http_status=503) from None  # fmt: skip

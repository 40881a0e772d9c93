"""``python -m scheduler.summary_worker``: the process that holds Spark for summaries.

Started by :class:`~scheduler.summary_job.SummaryJob` in a session of its own. It
lowers its priority (its session's autogroup and its own nice value), starts Spark,
rehearses one tiny summary, then answers requests: one JSON line in
(``{"run_id", "store", "builtin", "custom"}``), one JSON line out (``{"summary",
"error"}``). It exits when its stdin closes.

It holds stores of many users, so it never imports model code: a run's custom
``summarize`` runs in a process of its own (:mod:`ancho.custom_summary`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import select
import sys
import traceback
from pathlib import Path

from ancho.store import Store

from .summary_job import open_worker_store, rehearse, summarize_run

log = logging.getLogger("ancho.summary")


def lower_priority() -> None:
    """Yield the CPU to executors: lowest autogroup priority (Linux) and nice 19."""
    with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as fh:
        fh.write("19")
    with contextlib.suppress(OSError):
        os.nice(19)


def main() -> None:
    """Serve summary requests until stdin closes."""
    parser = argparse.ArgumentParser(prog="ancho-summary-worker")
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--work-dir", type=Path)
    parser.add_argument("--cache-dir", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    lower_priority()
    from ancho.cassandra_spark import connector_jars
    from ancho.spark import spark_session, stop_spark

    # The connector rides along whenever it was fetched: which store a run uses is only
    # known per request, and jars cannot be added to a running JVM.
    spark = spark_session(args.master, jars=connector_jars())
    # The rehearsal only pays when it runs while the executors work; if a request is
    # already waiting, the real summary warms the JVM just as well.
    if not select.select([sys.stdin], [], [], 0)[0]:
        try:
            rehearse(spark, args.work_dir)
        except Exception:
            log.exception("warm-up summary failed (the real one will tell)")
    log.info("ready")
    stores: dict[str, Store] = {}
    for line in sys.stdin:
        request = json.loads(line)
        try:
            store = open_worker_store(request["store"], stores)
            summary, error = summarize_run(
                store, request["run_id"], spark, args.work_dir, args.cache_dir, args.master,
                builtin=bool(request.get("builtin")), custom=bool(request.get("custom", True)),
            )  # fmt: skip
            reply: dict[str, object] = {"summary": summary, "error": error}
        except Exception as exc:
            traceback.print_exc()
            reply = {"summary": {}, "error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    for store in stores.values():
        store.close()
    stop_spark()


if __name__ == "__main__":
    main()

"""Cassandra benchmarks (not a test): ingest, summary and start time, side by side.

1. Ingest: sequences/s stored in Cassandra by ``ancho run`` (trivial model), next to the
   raw driver inserting the same rows with ``execute_concurrent_with_args`` and a prepared
   statement from one process (goal: Ancho >= 0.8 x the raw driver).
2. Summary: seconds for the Spark summary (read from Cassandra by the connector) of
   1,000,000 stored sequences with 3 outputs, next to numpy computing the same statistics
   on the same data in memory.
3. Cassandra start time on this machine (jars cached, data folder existing).

Needs ``make cassandra``. Usage: ``python bench/cassandra_bench.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ANCHO = str(Path(sys.executable).parent / "ancho")
sys.path.insert(0, str(REPO))

from common import new_user  # noqa: E402

from ancho.model import LoadedModel, OutputNames, run_sequences  # noqa: E402
from ancho.store import open_store  # noqa: E402
from ancho.store.cassandra import BUCKET, CassandraStore  # noqa: E402


def ancho_ingest(url: str, n: int) -> tuple[float, str]:
    """Stored sequences/s of ``ancho run`` (first batch running → all stored)."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = {"model": {"source": str(HERE / "models" / "three"),
                          "entrypoint": "model:simulate"}, "sequences": n, "seed": 1}  # fmt: skip
        path = Path(tmp) / "spec.json"
        path.write_text(json.dumps(spec))
        out = subprocess.run([ANCHO, "run", str(path), "--store", url, "--json"], cwd=tmp,
                             capture_output=True, text=True, check=True)  # fmt: skip
    run_id = json.loads(out.stdout)["run"]
    store = open_store(url)
    run = store.get_run(run_id)
    all_in = next(e.ts for e in store.iter_events(run_id) if e.message.startswith("all seq"))
    store.close()
    assert run.started_at is not None
    return n / (all_in - run.started_at), run_id


def raw_ingest(url: str, n: int) -> float:
    """Rows/s of the raw driver inserting the same rows (precomputed) one process."""
    from cassandra.concurrent import execute_concurrent_with_args
    from cassandra.query import UNSET_VALUE

    store = open_store(url)
    assert isinstance(store, CassandraStore)
    model = LoadedModel.load(HERE / "models" / "three", "model:simulate", {})
    rows = [
        ("raw", r.sequence // BUCKET, r.sequence, r.status, json.dumps(r.outputs), UNSET_VALUE,
         r.attempt, r.duration_s)
        for r in run_sequences(model, 1, 0, n, 1, OutputNames())
    ]  # fmt: skip
    t0 = time.perf_counter()
    execute_concurrent_with_args(store.session, store._insert_result, rows, concurrency=100)
    rate = n / (time.perf_counter() - t0)
    store.close()
    return rate


def summary_vs_numpy(url: str, run_id: str) -> tuple[float, float, float]:
    """(Spark summary s, numpy s, load-into-memory s) for a stored run."""
    from scheduler.summary_job import SummaryJob

    store = open_store(url)
    job = SummaryJob(store, work_dir=Path(tempfile.mkdtemp()))
    job.warm_up()
    job(run_id)  # the first summary includes the JVM's first-job cost: measure the second
    t0 = time.perf_counter()
    job(run_id)
    spark_s = time.perf_counter() - t0
    job.close()
    t0 = time.perf_counter()
    cols = {"u": [], "k": [], "hit": []}
    for r in store.iter_results(run_id):
        for k, v in r.outputs.items():
            cols[k].append(v)
    arrays = {k: np.asarray(v, dtype=float) for k, v in cols.items()}
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for x in arrays.values():
        m = x.mean()
        d = x - m
        m2 = (d**2).mean()
        _ = (x.std(ddof=1), x.min(), x.max(), (d**3).mean() / m2**1.5, (d**4).mean() / m2**2 - 3,
             np.quantile(x, [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]))  # fmt: skip
    numpy_s = time.perf_counter() - t0
    store.close()
    return spark_s, numpy_s, load_s


def start_time() -> float:
    """Seconds for ``cassandra_node.py start`` after a stop (jars cached, data kept)."""
    node = [sys.executable, str(REPO / "scripts" / "cassandra_node.py")]
    subprocess.run([*node, "stop"], check=True, capture_output=True)
    t0 = time.perf_counter()
    subprocess.run([*node, "start"], check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    """Run and print the report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    admin = (REPO / ".ancho" / "cassandra.url").read_text().strip()
    url = new_user(admin)
    n_ingest = 50_000 if args.quick else 200_000
    n_summary = 100_000 if args.quick else 1_000_000
    raw = raw_ingest(url, n_ingest)
    ours, _ = ancho_ingest(url, n_ingest)
    print(f"## Cassandra ({time.strftime('%Y-%m-%d')})\n")
    print(f"### Ingest, {n_ingest:,} sequences of a 3-output trivial model\n")
    print("| | rows/s | ratio |\n|---|---:|---:|")
    print(f"| raw driver, execute_concurrent_with_args, prepared, 1 process | {raw:,.0f} | 1.00 |")
    print(f"| ancho run (2 executors), first batch running → all stored | {ours:,.0f} | "
          f"{ours / raw:.2f} |\n")  # fmt: skip
    _, run_id = ancho_ingest(url, n_summary)
    spark_s, numpy_s, load_s = summary_vs_numpy(url, run_id)
    print(f"### Summary of {n_summary:,} stored sequences, 3 outputs\n")
    print("| | seconds |\n|---|---:|")
    print(f"| Spark (connector reads Cassandra, warm JVM) | {spark_s:.2f} |")
    print(f"| numpy, same statistics, data already in memory | {numpy_s:.2f} |")
    print(f"| (loading the data into numpy through the driver) | {load_s:.2f} |\n")
    print("### Cassandra start\n")
    print(f"`scripts/cassandra_node.py start` after a stop: {start_time():.1f} s")


if __name__ == "__main__":
    main()

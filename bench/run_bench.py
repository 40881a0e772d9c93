"""Benchmarks of ``ancho run`` side by side with ``multiprocessing.Pool`` (not a test).

Measures, in one run on this machine:

1. a 10 ms/sequence model: steady-state sequences/s stored by Ancho vs computed by a
   ``Pool`` of as many processes as cores, same model, same seeding;
2. a trivial model (a few µs): sequences/s stored (first batch launched → last stored)
   and end to end (command start → summary printed), with Pool alongside;
3. the fixed overhead of ``ancho run``: wall time of a tiny run, split into phases.

Ancho's progress is sampled by polling the run's row count in the SQLite store.
With ``--baseline REV``, also the trivial model's stored sequences/s of this tree
against the code of git revision ``REV`` (checked out into a temporary worktree and put
first on ``PYTHONPATH`` for the command, its executors and their model processes),
alternating the two, three runs each.

Prints a Markdown report (paste it into docs/benchmarks.md). Usage:
``python bench/run_bench.py [--quick] [--baseline REV] [--only-baseline]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ANCHO = str(Path(sys.executable).parent / "ancho")
sys.path.insert(0, str(HERE.parent))

from ancho.model import LoadedModel, OutputNames, run_sequences  # noqa: E402


# --- the baseline ------------------------------------------------------------------------
def _pool_chunk(args: tuple[str, dict[str, Any], int, int, int]) -> int:
    model_dir, params, seed, start, stop = args
    model = LoadedModel.load(Path(model_dir), "model:simulate", params)
    n = 0
    for _ in run_sequences(model, seed, start, stop, 1, OutputNames()):
        n += 1
    return n


def pool_rate(model: str, params: dict[str, Any], sequences: int, workers: int) -> float:
    """Sequences/s computed by a Pool (results returned, not stored)."""
    chunk = max(1, sequences // (workers * 8))
    jobs = [(model, params, 42, s, min(s + chunk, sequences)) for s in range(0, sequences, chunk)]
    with mp.Pool(workers) as pool:
        pool.map(_pool_chunk, jobs[:workers])  # warm: imports done before timing
        t0 = time.perf_counter()
        done = sum(pool.imap_unordered(_pool_chunk, jobs))
        elapsed = time.perf_counter() - t0
    assert done == sequences
    return sequences / elapsed


# --- Ancho ---------------------------------------------------------------------------------
class Sampler(threading.Thread):
    """Polls the newest run's stored row count every 0.25 s (a count costs CPU too)."""

    def __init__(self, db: Path) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with sqlite3.connect(self.db, timeout=1) as conn:
                    row = conn.execute(
                        "SELECT id FROM runs ORDER BY created_at DESC LIMIT 1"
                    ).fetchone()
                    if row:
                        n = conn.execute(
                            "SELECT count(*) FROM results WHERE run_id=?", (row[0],)
                        ).fetchone()[0]
                        self.samples.append((time.perf_counter(), n))
            except sqlite3.Error:
                pass
            time.sleep(0.25)


def ancho_run(model: str, params: dict[str, Any], sequences: int,
              env: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """Run ``ancho run`` in a scratch folder; return timings from the outside and the store."""
    with tempfile.TemporaryDirectory(prefix="ancho-bench-") as tmp:
        spec = {
            "model": {"source": model, "entrypoint": "model:simulate"},
            "parameters": params,
            "sequences": sequences,
            "seed": 42,
        }
        path = Path(tmp) / "spec.json"
        path.write_text(json.dumps(spec))
        db = Path(tmp) / ".ancho" / "ancho.db"
        sampler = Sampler(db)
        sampler.start()
        t0 = time.perf_counter()
        t0_wall = time.time()
        proc = subprocess.run([ANCHO, "run", str(path), "--json"], cwd=tmp,
                              capture_output=True, text=True, check=False,
                              env={**os.environ, **(env or {})})  # fmt: skip
        wall = time.perf_counter() - t0
        sampler.stop.set()
        sampler.join()
        if proc.returncode != 0:
            raise RuntimeError(f"ancho run failed: {proc.stderr[-2000:]}")
        conn = sqlite3.connect(db)
        rid, created, started, finished = conn.execute(
            "SELECT id, created_at, started_at, finished_at FROM runs"
        ).fetchone()
        events = dict(
            (msg.split(" (")[0], ts)
            for ts, msg in conn.execute("SELECT ts, message FROM events WHERE run_id=?", (rid,))
        )
        all_in = events["all sequences in"]
        return {
            "wall": wall,
            "t0_wall": t0_wall,
            "samples": sampler.samples,
            "t_created": created,
            "t_started": started,
            "t_all_in": all_in,
            "t_finished": finished,
            "stored_rate": sequences / (all_in - started),
            "summary_s": finished - all_in,
        }


def steady_rate(samples: list[tuple[float, int]], total: int) -> float:
    """Slope of stored rows against time between 10% and 90% of the run."""
    pts = [(t, n) for t, n in samples if 0.1 * total <= n <= 0.9 * total]
    if len(pts) < 3:
        return float("nan")
    t = np.array([p[0] for p in pts])
    n = np.array([p[1] for p in pts], dtype=float)
    return float(np.polyfit(t, n, 1)[0])


def against_baseline(rev: str, sequences: int, rounds: int = 3) -> None:
    """Stored sequences/s of the trivial model: this tree vs revision ``rev``, alternating."""
    trivial = str(HERE / "models" / "trivial")
    repo = HERE.parent
    with tempfile.TemporaryDirectory(prefix="ancho-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(tree), rev],
                       check=True, capture_output=True)  # fmt: skip
        try:
            base_env = {"PYTHONPATH": str(tree)}
            rates: dict[str, list[float]] = {"baseline": [], "this tree": []}
            for _ in range(rounds):
                for name, env in (("baseline", base_env), ("this tree", None)):
                    r = ancho_run(trivial, {}, sequences, env)
                    rates[name].append(steady_rate(r["samples"], sequences))
        finally:
            subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)],
                           check=False, capture_output=True)  # fmt: skip
    base = float(np.median(rates["baseline"]))
    print(f"## Trivial model, {sequences:,} sequences: this tree vs {rev}\n")
    print("| code | stored sequences/s, steady state (median of "
          f"{rounds}) | runs | ratio |\n|---|---:|---|---:|")  # fmt: skip
    for name, values in rates.items():
        med = float(np.median(values))
        runs = ", ".join(f"{v:,.0f}" for v in values)
        print(f"| {name} | {med:,.0f} | {runs} | {med / base:.3f} |")
    print()


def main() -> None:
    """Run every benchmark and print the report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller runs (smoke test)")
    parser.add_argument("--baseline", metavar="REV", help="compare with git revision REV")
    parser.add_argument("--only-baseline", action="store_true",
                        help="only the comparison with --baseline")  # fmt: skip
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    scale = 0.2 if args.quick else 1.0
    models = HERE / "models"
    print(f"# Ancho benchmarks ({platform.node()}, {cores} cores, Python "
          f"{platform.python_version()}, {time.strftime('%Y-%m-%d')})\n")  # fmt: skip
    if args.baseline:
        against_baseline(args.baseline, int(400_000 * scale))
        if args.only_baseline:
            return

    # 1. 10 ms model.
    n10 = int(3000 * scale)
    sleepy = str(models / "sleepy")
    base10 = pool_rate(sleepy, {"work_ms": 10}, n10, cores)
    r10 = ancho_run(sleepy, {"work_ms": 10}, n10)
    ss10 = steady_rate(r10["samples"], n10)
    print("## 10 ms/sequence model\n")
    print("| | sequences/s | ratio to Pool |\n|---|---:|---:|")
    print(f"| multiprocessing.Pool({cores}) | {base10:,.1f} | 1.00 |")
    print(f"| ancho run, steady state (10-90%) | {ss10:,.1f} | {ss10 / base10:.3f} |")
    print(f"| ancho run, first launch → all stored | {r10['stored_rate']:,.1f} | "
          f"{r10['stored_rate'] / base10:.3f} |\n")  # fmt: skip

    # 2. trivial model.
    nt = int(1_000_000 * scale)
    trivial = str(models / "trivial")
    baset = pool_rate(trivial, {}, nt, cores)
    rt = ancho_run(trivial, {}, nt)
    sst = steady_rate(rt["samples"], nt)
    print(f"## Trivial model, {nt:,} sequences\n")
    print("| | sequences/s |\n|---|---:|")
    print(f"| multiprocessing.Pool({cores}), computed, not stored | {baset:,.0f} |")
    print(f"| ancho run, steady state stored (10-90%) | {sst:,.0f} |")
    print(f"| ancho run, first launch → all stored | {rt['stored_rate']:,.0f} |")
    print(f"| ancho run, end to end incl. start and summary | {nt / rt['wall']:,.0f} |")
    print(f"\nSummary of {nt:,} sequences: {rt['summary_s']:.1f} s; wall {rt['wall']:.1f} s.\n")

    # 3. fixed overhead.
    r0 = ancho_run(trivial, {}, 100)
    cmd_to_created = r0["t_created"] - r0["t0_wall"]
    teardown = r0["wall"] - (r0["t_finished"] - r0["t0_wall"])
    print("## Fixed overhead of `ancho run` (100 trivial sequences)\n")
    print("| phase | seconds |\n|---|---:|")
    print(f"| process start, imports, spec, store (until the run is stored) | "
          f"{cmd_to_created:.2f} |")  # fmt: skip
    print(f"| embedded cluster, framework, first executor running | "
          f"{r0['t_started'] - r0['t_created']:.2f} |")  # fmt: skip
    print(f"| sequences (first running → all stored) | {r0['t_all_in'] - r0['t_started']:.2f} |")
    print(f"| summary (Parquet export + Spark job; JVM started during the run) | "
          f"{r0['summary_s']:.2f} |")  # fmt: skip
    print(f"| teardown: framework, embedded cluster, Spark worker stop | {teardown:.2f} |")
    print(f"| **total wall** | **{r0['wall']:.2f}** |")


if __name__ == "__main__":
    main()

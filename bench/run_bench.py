"""Benchmarks of ``ancho run`` side by side with ``multiprocessing.Pool``, and with Dask
and Ray where they are installed in this environment (not a test).

Measures, in one run on this machine:

1. a 10 ms/sequence model, 1,000 sequences, from command start to summary printed:
   ``ancho run`` against a ``Pool`` of as many processes as cores (started, mapped,
   results summarised with numpy), a Dask ``LocalCluster`` and Ray, all on the same
   model with the contract's generators made numpy's way;
2. a trivial model (a few µs): sequences/s stored by Ancho (steady state, and first
   batch launched → last stored) against sequences/s computed by the Pool (not stored);
3. how long after the last sequence is stored the summary is there, for 100 to
   10,000,000 sequences, next to the Spark job that used to compute it (``ancho summary
   --recompute``, JVM start included) on the 1,000,000-sequence run;
4. the fixed overhead of ``ancho run``: wall time of a tiny run, split into phases.

Ancho's progress is sampled by polling the run's row count in the SQLite store.
With ``--baseline REV``, also the trivial model's stored sequences/s of this tree
against the code of git revision ``REV`` (checked out into a temporary worktree and put
first on ``PYTHONPATH`` for the command, its executors and their model processes),
alternating the two, three runs each.

Prints a Markdown report (paste it into docs/benchmarks.md). Usage:
``python bench/run_bench.py [--quick] [--baseline REV] [--only-baseline]``
(Dask and Ray: ``pip install "dask[distributed]" ray`` into the same environment).
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
from ancho.seeding import sequence_rng  # noqa: E402


# --- the baselines -----------------------------------------------------------------------
def _plain_chunk(args: tuple[str, dict[str, Any], int, int, int]) -> list[float]:
    """What a user writes without Ancho: the contract's generators made numpy's way."""
    model_dir, params, seed, start, stop = args
    simulate = LoadedModel.load(Path(model_dir), "model:simulate", params).simulate
    return [float(next(iter(simulate(params, sequence_rng(seed, i)).values())))
            for i in range(start, stop)]  # fmt: skip


def _fast_chunk(args: tuple[str, dict[str, Any], int, int, int]) -> int:
    """The same with Ancho's own sequence loop (its fast generators)."""
    model_dir, params, seed, start, stop = args
    model = LoadedModel.load(Path(model_dir), "model:simulate", params)
    return sum(1 for _ in run_sequences(model, seed, start, stop, 1, OutputNames()))


def _jobs(model: str, params: dict[str, Any], sequences: int, pieces: int) -> list[Any]:
    chunk = max(1, sequences // pieces)
    return [(model, params, 42, s, min(s + chunk, sequences)) for s in range(0, sequences, chunk)]


def pool_rate(model: str, params: dict[str, Any], sequences: int, workers: int,
              fast: bool = False) -> float:  # fmt: skip
    """Sequences/s computed by a warm Pool (results returned, not stored)."""
    jobs = _jobs(model, params, sequences, workers * 8)
    chunk = _fast_chunk if fast else _plain_chunk
    with mp.Pool(workers) as pool:
        pool.map(chunk, jobs[:workers])  # warm: imports done before timing
        t0 = time.perf_counter()
        done = sum(n if fast else len(n) for n in pool.imap_unordered(chunk, jobs))
        elapsed = time.perf_counter() - t0
    assert done == sequences
    return sequences / elapsed


def _summarise(values: list[float]) -> dict[str, float]:
    x = np.asarray(values)
    return {"mean": float(x.mean()), "sem": float(x.std(ddof=1) / np.sqrt(x.size)),
            **{str(q): float(np.quantile(x, q)) for q in (0.01, 0.5, 0.99)}}  # fmt: skip


def pool_end_to_end(model: str, params: dict[str, Any], sequences: int, workers: int) -> float:
    """Seconds from nothing to a summary: start a Pool, map, summarise."""
    t0 = time.perf_counter()
    with mp.Pool(workers) as pool:
        parts = pool.map(_plain_chunk, _jobs(model, params, sequences, workers * 4))
    _summarise([v for part in parts for v in part])
    return time.perf_counter() - t0


def dask_end_to_end(model: str, params: dict[str, Any], sequences: int,
                    workers: int) -> float | None:  # fmt: skip
    """The same on a Dask LocalCluster (None when Dask is not installed)."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        return None
    t0 = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:  # fmt: skip
        futures = client.map(_plain_chunk, _jobs(model, params, sequences, workers * 4))
        parts = client.gather(futures)
    _summarise([v for part in parts for v in part])
    return time.perf_counter() - t0


def ray_end_to_end(model: str, params: dict[str, Any], sequences: int,
                   workers: int) -> float | None:  # fmt: skip
    """The same on Ray (None when Ray is not installed)."""
    try:
        import ray
    except ImportError:
        return None
    t0 = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(_plain_chunk)
        parts = ray.get([task.remote(j) for j in _jobs(model, params, sequences, workers * 4)])
        _summarise([v for part in parts for v in part])
    finally:
        ray.shutdown()
    return time.perf_counter() - t0


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
              env: dict[str, str] | None = None, keep: bool = False) -> dict[str, Any]:  # fmt: skip
    """Run ``ancho run`` in a scratch folder; return timings from the outside and the store
    (``keep``: leave the folder, named in ``folder``, for more commands on the run)."""
    folder = tempfile.mkdtemp(prefix="ancho-bench-")
    try:
        return _ancho_run(folder, model, params, sequences, env, keep)
    finally:
        if not keep:
            subprocess.run(["rm", "-rf", folder], check=False)


def _ancho_run(tmp: str, model: str, params: dict[str, Any], sequences: int,
               env: dict[str, str] | None, keep: bool) -> dict[str, Any]:  # fmt: skip
    """One ``ancho run`` in the folder ``tmp``."""
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
        "run": rid,
        "folder": Path(tmp) if keep else None,
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
    """This tree against revision ``rev``, alternating the two, ``rounds`` runs each: the
    10 ms model's 1,000 sequences end to end (and the summary's share of it), and the
    trivial model's stored sequences/s."""
    sleepy, trivial = str(HERE / "models" / "sleepy"), str(HERE / "models" / "trivial")
    repo = HERE.parent
    names = ("baseline", "this tree")
    walls: dict[str, list[float]] = {name: [] for name in names}
    summaries: dict[str, list[float]] = {name: [] for name in names}
    rates: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="ancho-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(tree), rev],
                       check=True, capture_output=True)  # fmt: skip
        try:
            envs = {"baseline": {"PYTHONPATH": str(tree)}, "this tree": None}
            for _ in range(rounds):
                for name in names:
                    r = ancho_run(sleepy, {"work_ms": 10}, 1000, envs[name])
                    walls[name].append(r["wall"])
                    summaries[name].append(r["summary_s"])
                    r = ancho_run(trivial, {}, sequences, envs[name])
                    rates[name].append(steady_rate(r["samples"], sequences))
        finally:
            subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)],
                           check=False, capture_output=True)  # fmt: skip

    def runs(values: list[float], fmt: str) -> str:
        return ", ".join(format(v, fmt) for v in values)

    print(f"## This tree vs {rev} (alternating, median of {rounds})\n")
    print("| code | 10 ms, 1,000 seq.: wall s | of which summary s | runs (wall) "
          f"| trivial {sequences:,}: stored/s | runs | ratio |")  # fmt: skip
    print("|---|---:|---:|---|---:|---|---:|")
    base = float(np.median(rates["baseline"]))
    for name in names:
        rate = float(np.median(rates[name]))
        print(f"| {name} | {np.median(walls[name]):.2f} | {np.median(summaries[name]):.3f} | "
              f"{runs(walls[name], '.2f')} | {rate:,.0f} | {runs(rates[name], ',.0f')} | "
              f"{rate / base:.3f} |")  # fmt: skip
    print()


def recompute_s(folder: Path, run_id: str) -> float:
    """Wall seconds of ``ancho summary --recompute`` (the Spark job, JVM start included)."""
    t0 = time.perf_counter()
    subprocess.run([ANCHO, "summary", run_id, "--recompute", "--format", "json"], cwd=folder,
                   capture_output=True, text=True, check=True)  # fmt: skip
    return time.perf_counter() - t0


def main() -> None:
    """Run every benchmark and print the report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller runs (smoke test)")
    parser.add_argument("--baseline", metavar="REV", help="compare with git revision REV")
    parser.add_argument("--only-baseline", action="store_true",
                        help="only the comparison with --baseline")  # fmt: skip
    args = parser.parse_args()
    # As a user's shell: Python caches bytecode (some sandboxes turn that off, which
    # would charge every command the compilation of every module it imports).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    cores = os.cpu_count() or 1
    scale = 0.2 if args.quick else 1.0
    models = HERE / "models"
    print(f"# Ancho benchmarks ({platform.node()}, {cores} cores, Python "
          f"{platform.python_version()}, {time.strftime('%Y-%m-%d')})\n")  # fmt: skip
    if args.baseline:
        against_baseline(args.baseline, int(400_000 * scale))
        if args.only_baseline:
            return
    sleepy, trivial = str(models / "sleepy"), str(models / "trivial")

    # 1. 10 ms model, 1,000 sequences, command start to summary.
    n10 = 1000
    ancho10 = ancho_run(sleepy, {"work_ms": 10}, n10)
    rows = [(f"multiprocessing.Pool({cores})", pool_end_to_end(sleepy, {"work_ms": 10}, n10,
                                                                cores))]  # fmt: skip
    for name, fn in (("Dask LocalCluster", dask_end_to_end), ("Ray", ray_end_to_end)):
        seconds = fn(sleepy, {"work_ms": 10}, n10, cores)
        rows.append((name, seconds))
    pool10 = rows[0][1]
    assert pool10 is not None
    print(f"## 10 ms/sequence model, {n10:,} sequences: start to summary\n")
    print("| | seconds | ratio to Pool |\n|---|---:|---:|")
    print(f"| ancho run (command start → summary printed) | {ancho10['wall']:.2f} | "
          f"{ancho10['wall'] / pool10:.2f} |")  # fmt: skip
    for name, seconds in rows:
        if seconds is None:
            print(f"| {name} | not installed | |")
        else:
            print(
                f"| {name} (start → results summarised) | {seconds:.2f} | {seconds / pool10:.2f} |"
            )
    print(f"\nAfter the last sequence was stored, ancho's summary took "
          f"{ancho10['summary_s']:.3f} s.\n")  # fmt: skip

    # 2. trivial model.
    nt = int(400_000 * scale)
    plain = pool_rate(trivial, {}, nt, cores)
    fast = pool_rate(trivial, {}, nt, cores, fast=True)
    rt = ancho_run(trivial, {}, nt)
    sst = steady_rate(rt["samples"], nt)
    print(f"## Trivial model, {nt:,} sequences\n")
    print("| | sequences/s | ratio to Pool |\n|---|---:|---:|")
    print(f"| multiprocessing.Pool({cores}), computed, not stored | {plain:,.0f} | 1.00 |")
    print(f"| Pool({cores}) with Ancho's sequence loop (fast generators) | {fast:,.0f} | "
          f"{fast / plain:.2f} |")  # fmt: skip
    print(f"| ancho run, stored, steady state (10-90%) | {sst:,.0f} | {sst / plain:.2f} |")
    print(f"| ancho run, stored, first launch → all stored | {rt['stored_rate']:,.0f} | "
          f"{rt['stored_rate'] / plain:.2f} |")  # fmt: skip
    print(f"| ancho run, end to end incl. start and summary | {nt / rt['wall']:,.0f} | "
          f"{nt / rt['wall'] / plain:.2f} |\n")  # fmt: skip

    # 3. summary latency.
    sizes = [100, 10_000, 1_000_000] + ([] if args.quick else [10_000_000])
    print("## Summary after the last sequence is stored (trivial model)\n")
    print("| sequences | ancho run wall s | summary s (all in → FINISHED) | Spark job s |")
    print("|---:|---:|---:|---:|")
    for n in sizes:
        r = ancho_run(trivial, {}, n, keep=n == 1_000_000)
        spark = f"{recompute_s(r['folder'], r['run']):.1f}" if n == 1_000_000 else ""
        print(f"| {n:,} | {r['wall']:.1f} | {r['summary_s']:.3f} | {spark} |")
        if r.get("folder"):
            subprocess.run(["rm", "-rf", str(r["folder"])], check=False)
    print()

    # 4. fixed overhead.
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
    print(f"| summary (merge of the blocks' partials) | {r0['summary_s']:.3f} |")
    print(f"| teardown: framework, embedded cluster | {teardown:.2f} |")
    print(f"| **total wall** | **{r0['wall']:.2f}** |")


if __name__ == "__main__":
    main()

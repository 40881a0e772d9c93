"""``Run.results()`` against ``ancho results --format parquet`` then ``pandas.read_parquet``
(issue 14's figure; not a test): time and peak memory for a run of ``--rows`` results.

The run is written straight into a fresh SQLite store (two outputs per sequence, a float
and an int, as the pi example's), so both ways read the same rows. Each way runs in a
process of its own; "peak" is that process's maximum resident set less what it held
after its imports, and "frame" is the DataFrame's own size (``memory_usage(deep=True)``).

Usage: ``python bench/results_frame.py [--rows 1000000]``; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ANCHO = str(Path(sys.executable).parent / "ancho")

#: Run in a child: import, note the resident set, do the work, print the figures.
CHILD = r"""
import json, resource, sys, time
import pandas as pd
import ancho
from ancho.api import Run
from ancho.backend import StoreBackend
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
store_url, run_id, way, parquet = sys.argv[1:5]
t0 = time.perf_counter()
if way == "results":
    frame = Run(StoreBackend(ancho.open_store(store_url)), run_id).results()
else:
    frame = pd.read_parquet(parquet)
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_mb": (peak - base) / 1024,
                  "frame_mb": int(frame.memory_usage(deep=True).sum()) / 2**20,
                  "rows": len(frame)}))
"""


def _fill(store_url: str, rows: int) -> str:
    """A FINISHED run of ``rows`` results in the store; its id."""
    import numpy as np

    import ancho
    from ancho.results import SequenceResult
    from ancho.runner import new_run
    from ancho.spec import spec_from_data

    spec = spec_from_data({"model": {"source": "examples/pi", "entrypoint": "model:simulate"},
                           "sequences": rows, "seed": 1}, base=Path.cwd())  # fmt: skip
    store = ancho.open_store(store_url)
    run = new_run(spec)
    store.create_run(run)
    store.register_outputs(run.id, ["pi", "inside"])
    rng = np.random.default_rng(1)
    for start in range(0, rows, 50_000):
        inside = rng.binomial(1000, np.pi / 4, min(50_000, rows - start))
        store.write_results(run.id, [
            SequenceResult(start + i, "ok", {"pi": 4.0 * int(k) / 1000, "inside": int(k)})
            for i, k in enumerate(inside)
        ])  # fmt: skip
    store.update_run(run.id, state="FINISHED", ok=rows, finished_at=time.time())
    return run.id


def _child(store_url: str, run_id: str, way: str, parquet: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, store_url, run_id, way, parquet],
                         capture_output=True, text=True, check=True)  # fmt: skip
    figures: dict[str, float] = json.loads(out.stdout)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ancho-frame-") as folder:
        store_url = f"sqlite:///{Path(folder) / 'ancho.db'}"
        run_id = _fill(store_url, args.rows)
        parquet = str(Path(folder) / "results.parquet")
        t0 = time.perf_counter()
        subprocess.run([ANCHO, "results", run_id, "--format", "parquet", "-o", parquet,
                        "--store", store_url], check=True, capture_output=True)  # fmt: skip
        export_s = time.perf_counter() - t0
        read = _child(store_url, run_id, "parquet", parquet)
        ours = _child(store_url, run_id, "results", parquet)
    print(f"# Run.results() on {args.rows:,} rows ({time.strftime('%Y-%m-%d')})\n")
    print("| way | seconds | peak memory beyond imports | frame's own size |")
    print("|---|---|---|---|")
    print(f"| `ancho results --format parquet` ({export_s:.1f} s) then `pandas.read_parquet`"
          f" ({read['seconds']:.1f} s) | {export_s + read['seconds']:.1f} |"
          f" {read['peak_mb']:.0f} MiB (the read) | {read['frame_mb']:.0f} MiB |")  # fmt: skip
    print(
        f"| `Run.results()` | {ours['seconds']:.1f} | {ours['peak_mb']:.0f} MiB |"
        f" {ours['frame_mb']:.0f} MiB |"
    )
    print(f"\nPeak over the frame's size: {ours['peak_mb'] / ours['frame_mb']:.1f}x (goal ≤ 3x).")


if __name__ == "__main__":
    main()

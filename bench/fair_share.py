"""Issue 13's shared-cluster measurement (not a test): the small run's time alone and
among another user's big runs, and how busy the cpus were, on ``ancho cluster``.

Usage: ``python bench/fair_share.py [--agents 2] [--cpus 2] [--repeats 1]``; prints a
Markdown table. To measure an older commit, run it with that commit's checkout first on
``PYTHONPATH`` (the server then runs the old scheduler).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from ancho.cluster.ports import cluster_port
from ancho.cluster.sharing import Site, Workload, measure

MODEL = Path(__file__).resolve().parents[1] / "tests" / "models" / "slow"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    workload = Workload(MODEL, agents=args.agents, cpus=args.cpus)
    print(f"# Fair shares on ancho cluster ({time.strftime('%Y-%m-%d')})\n")
    print(f"{args.agents} agents x {args.cpus} cpus; user ann: {workload.big_runs} runs of"
          f" {workload.big_sequences} sequences; {workload.small_after_s:g} s later user bob:"
          f" one of {workload.small_sequences}; {workload.work_ms:g} ms a sequence.\n")  # fmt: skip
    print("| repeat | small alone | small shared | ratio | small last | cpus busy | makespan |")
    print("|---|---|---|---|---|---|---|")
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="ancho-share-") as folder:
            ports = (cluster_port(), cluster_port(), cluster_port())
            site = Site(workload, Path(folder), ports).start()
            try:
                f = measure(site)
            finally:
                site.stop()
        print(f"| {i + 1} | {f.small_alone_s:.1f} s | {f.small_shared_s:.1f} s |"
              f" {f.small_shared_s / f.small_alone_s:.2f} | {f.small_finished_last} |"
              f" {f.busy:.2f} | {f.makespan_s:.1f} s |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

"""Fault injection figures (not a test): what each kind of fault costs a run, and a
long run that takes a seeded schedule of faults.

On ``ancho cluster`` (3 masters, 3 agents of 1 cpu, ZooKeeper, a 3-node Cassandra ring
at replication factor 3 and QUORUM) with two ``ancho server --zk`` (one leads, one
stands by) storing into the ring (``ancho.cluster.nemesis.FaultWorld``), in one
invocation:

1. three undisturbed runs of the deterministic model (tests/models/slow), after a warm-up
   run: their median wall time, the SHA-256 of ``ancho results RUN --format jsonl`` (the
   same for all three) and the summary, the baseline;
2. per fault kind, the same run with that fault in the middle: the time from the fault
   until the run stored progress again, its wall time against the baseline's, the
   sequences launched again (an upper bound on those computed twice), and whether
   results and summary equal the baseline's;
3. a longer run taking ``--faults`` faults (20) drawn by ``schedule(--seed)``: faults
   injected, sequences lost and duplicated in the export, results and summary equal.

Prints a Markdown report (paste it into docs/benchmarks.md). Usage:
``python bench/faults.py [--faults 20] [--seed 7] [--sequences 300] [--long 12000]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ancho.cluster.nemesis import KINDS, Fault, FaultWorld, schedule

MODEL = Path(__file__).resolve().parent.parent / "tests" / "models" / "slow"
SLEEP_S = 0.04
BASELINE_RUNS = 3


def _run(world: FaultWorld, sequences: int, seed: int) -> str:
    return world.submit(MODEL, sequences, seed, sleep_s=SLEEP_S)


def _until_ok(world: FaultWorld, run_id: str, ok: int, timeout_s: float = 120) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        run = world.stored(run_id)
        if run["ok"] >= ok:
            return time.monotonic() - start
        if run["done"]:
            return None
        time.sleep(0.05)
    return None


def _finish(world: FaultWorld, run_id: str, started: float) -> tuple[dict[str, object], float]:
    run = world.wait(run_id, 900)
    return run, time.monotonic() - started


def _export_counts(world: FaultWorld, run_id: str, sequences: int) -> tuple[int, int]:
    """(lost, duplicated) sequences in the run's export."""
    indices = [json.loads(line)["sequence"] for line in world.export(run_id).splitlines()]
    lost = len(set(range(sequences)) - set(indices))
    return lost, len(indices) - len(set(indices))


def _relaunched(world: FaultWorld, run_id: str) -> str:
    """The sequences launched again, and the updates that sent them back."""
    reasons = world.relaunch_reasons(run_id)
    why = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
    return f"{sum(reasons.values())}" + (f" ({why})" if why else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faults", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sequences", type=int, default=300)
    parser.add_argument("--long", type=int, default=12000, help="sequences of the long run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ancho-faults-") as tmp:
        world = FaultWorld(Path(tmp), cassandra=3,
                           log=lambda line: print("  " + line, file=sys.stderr))  # fmt: skip
        world.start()
        try:
            report(world, args)
        finally:
            world.stop()


def report(world: FaultWorld, args: argparse.Namespace) -> None:
    n, seed = args.sequences, 21
    _finish(world, _run(world, n, seed + 1), time.monotonic())  # warm: model cached, Spark up
    walls, shas = [], set()
    for _ in range(BASELINE_RUNS):
        started = time.monotonic()
        base_id = _run(world, n, seed)
        base, wall = _finish(world, base_id, started)
        assert base["state"] == "FINISHED", base
        walls.append(wall)
        shas.add(world.results_sha256(base_id))
    assert len(shas) == 1, "undisturbed runs of one seed differ"
    base_wall, base_sha = statistics.median(walls), shas.pop()
    base_summary = world.summary_outputs(base_id)
    print(f"# Fault injection ({time.strftime('%Y-%m-%d')})\n")
    print(f"Model: {n} sequences of tests/models/slow at {SLEEP_S * 1000:.0f} ms each, on 3 "
          "agents of 1 cpu, 3 masters; two ancho servers (--zk); a 3-node Cassandra ring"
          " (RF 3, QUORUM).\n")  # fmt: skip
    print(f"Undisturbed runs (the baseline, after a warm-up run): median {base_wall:.1f} s of "
          f"{BASELINE_RUNS} ({', '.join(f'{w:.1f}' for w in walls)} s).\n")  # fmt: skip
    print(
        "| fault | what it hit | progress again after | run wall (baseline "
        f"{base_wall:.1f} s) | sequences relaunched | results and summary as baseline |"
    )
    print("|---|---|---|---|---|---|")
    for kind in KINDS:
        world.restart_dead()
        world.wait_leader()
        world.cluster.wait_registered(world.agents)
        started = time.monotonic()
        run_id = _run(world, n, seed)
        _until_ok(world, run_id, n // 5)
        ok = world.stored(run_id)["ok"]
        injected = world.inject(Fault(kind, 0.0), run_id)
        recovered = _until_ok(world, run_id, int(ok) + 1)
        run, wall = _finish(world, run_id, started)
        same = (run["state"] == "FINISHED" and world.results_sha256(run_id) == base_sha
                and world.summary_outputs(run_id) == base_summary)  # fmt: skip
        again = "-" if recovered is None else f"{recovered:.1f} s"
        print(
            f"| {kind} | {injected.target} | {again} | {wall:.1f} s | "
            f"{_relaunched(world, run_id)} | {'yes' if same else 'NO: ' + str(run)} |"
        )
        world.restart_dead()
    combined(world, args, seed, base_wall)


def combined(world: FaultWorld, args: argparse.Namespace, seed: int, base_wall: float) -> None:
    n = args.long
    world.cluster.wait_registered(world.agents)
    started = time.monotonic()
    base_id = _run(world, n, seed)
    _, base_wall_long = _finish(world, base_id, started)
    base_sha, base_summary = world.results_sha256(base_id), world.summary_outputs(base_id)
    plan = schedule(args.seed, args.faults, span_s=max(base_wall_long * 1.5, args.faults * 3.0))
    started = time.monotonic()
    run_id = _run(world, n, seed)
    injected = 0
    for fault in plan:
        while time.monotonic() - started < fault.at_s:
            time.sleep(0.05)
        if world.stored(run_id)["done"]:
            break
        world.restart_dead()  # a machine killed earlier is back
        world.inject(fault, run_id)
        injected += 1
    run, wall = _finish(world, run_id, started)
    lost, duplicated = _export_counts(world, run_id, n)
    counts = world.store().count_results(run_id)
    same = (
        world.results_sha256(run_id) == base_sha and world.summary_outputs(run_id) == base_summary
    )
    kinds = sorted({f.kind for f in plan[:injected]})
    print(f"\n## Combined: {n} sequences, seed {args.seed}\n")
    print("| figure | value |\n|---|---|")
    print(f"| undisturbed wall | {base_wall_long:.1f} s |")
    print(f"| faults injected | {injected} of {len(plan)} planned ({', '.join(kinds)}) |")
    print(f"| run state | {run['state']} |")
    print(f"| wall with the faults | {wall:.1f} s |")
    print(f"| stored ok / failed | {counts.ok} / {counts.failed} |")
    print(f"| sequences lost | {lost} |")
    print(f"| sequences duplicated in the export | {duplicated} |")
    print(f"| sequences relaunched | {_relaunched(world, run_id)} |")
    print(f"| results and summary as the undisturbed run | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()

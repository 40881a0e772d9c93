"""The scheduler's state machine at scale, by simulation (not a test): CPU per launched
batch, batches dispatched per second of scheduler CPU, and memory.

The pure ``SchedulerState`` gets what a Mesos master would send it, with no I/O: every
agent's free resources offered in rounds, and each batch's TASK_FINISHED (with its
report) ``--batch-s`` simulated seconds after its launch. ``--agents`` agents of
``--cpus`` cpus; ``--runs`` runs from ``--users`` users, each of ``--sequences``
sequences (so none ends during the measurement). Only the time inside
``SchedulerState.handle`` counts (``time.process_time``); memory is the process's
resident set after the warm-up and at the end (the simulator's own bookkeeping
included, so it bounds the state's).

Usage: ``python bench/scheduler_sim.py [--agents 1000] [--cpus 32] [--runs 200]
[--users 50] [--seconds 60] [--sequences 1000000000]``; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import time
from collections import defaultdict
from dataclasses import dataclass

from ancho.messages import BatchReport
from scheduler.events import (
    Launch,
    Offer,
    Offers,
    RunInfo,
    Submit,
    Subscribed,
    TaskStatus,
    Tick,
)
from scheduler.state import TASK_CPUS, TASK_MEM_MB, SchedulerConfig, SchedulerState

MEM_PER_CPU_MB = 4096
#: RunInfo's fields: the same script measures a commit from before runs had owners.
RUN_FIELDS = {f.name for f in dataclasses.fields(RunInfo)}


@dataclass
class Figures:
    """What one simulation measured."""

    launched: int = 0
    finished: int = 0
    handle_cpu_s: float = 0.0
    events: int = 0


def simulate(args: argparse.Namespace) -> tuple[Figures, int, int, SchedulerState]:
    """Run the simulation; (figures, resident bytes after warm-up and at the end, the
    state)."""
    state = SchedulerState(SchedulerConfig(fixed_batch=args.batch))
    figures = Figures()

    def handle(event: object) -> list[object]:
        started = time.process_time()
        out = state.handle(event)  # type: ignore[arg-type]
        figures.handle_cpu_s += time.process_time() - started
        figures.events += 1
        return list(out)

    now = 0.0
    handle(Subscribed(now))
    for i in range(args.runs):
        owned = {"owner": f"u{i % args.users}", "created_at": float(i)}
        info = RunInfo(f"u{i % args.users}r{i}", args.sequences, cpus=1.0, mem_mb=512,
                       **{k: v for k, v in owned.items() if k in RUN_FIELDS})  # fmt: skip
        handle(Submit(info, now))
    free = {f"a{i}": (float(args.cpus), float(args.cpus * MEM_PER_CPU_MB))
            for i in range(args.agents)}  # fmt: skip
    executor_agent: dict[str, str] = {}
    task_cpus: dict[str, tuple[str, float, float]] = {}
    due: list[tuple[float, str, int, int]] = []  # (when, task id, start, stop)
    offer_seq = 0
    round_s = 1.0
    warm_bytes = 0
    while now < args.seconds:
        if warm_bytes == 0 and now >= args.seconds / 4:
            warm_bytes = _rss()
            figures.launched = figures.finished = figures.events = 0
            figures.handle_cpu_s = 0.0
        # Tasks that end by now.
        while due and due[0][0] <= now:
            _, task_id, start, stop = heapq.heappop(due)
            agent, cpus, mem = task_cpus.pop(task_id)
            report = BatchReport(stop, stop - start, 0, args.batch_s)
            handle(TaskStatus(task_id, "TASK_FINISHED", now, report=report, agent_id=agent))
            figures.finished += 1
            c, m = free[agent]
            free[agent] = (c + cpus, m + mem)
        # Offers: every agent with something free, in rounds of 100 offers.
        offers = []
        for agent, (c, m) in free.items():
            if c >= 0.01 and m >= 1:
                offer_seq += 1
                offers.append(Offer(f"o{offer_seq}", agent, agent, c, m))
        for i in range(0, len(offers), 100):
            for command in handle(Offers(tuple(offers[i : i + 100]), now)):
                if isinstance(command, Launch):
                    _launched(command, free, executor_agent, task_cpus, due, now, args, figures)
        handle(Tick(now))
        now += round_s
    end_bytes = _rss()
    return figures, warm_bytes, end_bytes, state


def _rss() -> int:
    """This process's resident set, in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _launched(command: Launch, free: dict[str, tuple[float, float]],
              executor_agent: dict[str, str], task_cpus: dict[str, tuple[str, float, float]],
              due: list[tuple[float, str, int, int]], now: float, args: argparse.Namespace,
              figures: Figures) -> None:  # fmt: skip
    """Take an accepted offer's resources and schedule its tasks' ends."""
    used: defaultdict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for task in command.tasks:
        figures.launched += 1
        # A new executor takes its run's cpus from the offer (its first batches ride in
        # them); a batch for a running executor, a task slice, given back at its end.
        new = task.new_executor
        cpus = task.run.cpus if new else TASK_CPUS
        mem = float(task.run.mem_mb) if new else TASK_MEM_MB
        executor_agent[task.executor_id] = command.agent_id
        used[command.agent_id][0] += cpus
        used[command.agent_id][1] += mem
        task_cpus[task.task_id] = (command.agent_id, TASK_CPUS, TASK_MEM_MB)
        heapq.heappush(due, (now + args.batch_s, task.task_id, task.range.start, task.range.stop))
    for agent, (c, m) in used.items():
        fc, fm = free[agent]
        free[agent] = (fc - c, fm - m)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--cpus", type=int, default=32)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0, help="simulated seconds")
    parser.add_argument("--sequences", type=int, default=10**9)
    parser.add_argument("--batch", type=int, default=1000, help="sequences per batch")
    parser.add_argument("--batch-s", type=float, default=2.0, help="a batch's seconds")
    args = parser.parse_args()
    wall = time.monotonic()
    figures, warm, end, state = simulate(args)
    wall = time.monotonic() - wall
    per_batch_us = figures.handle_cpu_s / max(figures.launched, 1) * 1e6
    rate = figures.launched / figures.handle_cpu_s if figures.handle_cpu_s else float("inf")
    print(f"# Scheduler simulation ({time.strftime('%Y-%m-%d')})\n")
    print(f"{args.agents} agents x {args.cpus} cpus, {args.runs} runs of {args.users} users,"
          f" batches of {args.batch} sequences lasting {args.batch_s:g} s, {args.seconds:g}"
          " simulated seconds (the last three quarters measured);"
          f" {wall:.1f} s wall.\n")  # fmt: skip
    print("| figure | value |\n|---|---|")
    print(f"| batches launched (measured part) | {figures.launched:,} |")
    print(f"| events handled | {figures.events:,} |")
    print(f"| scheduler CPU in handle() | {figures.handle_cpu_s:.2f} s |")
    print(f"| CPU per launched batch | {per_batch_us:.0f} µs |")
    print(f"| batches per second of scheduler CPU | {rate:,.0f} |")
    shares = getattr(state, "shares", None)  # absent before fair shares
    held = sorted(u.cpus for u in shares.users.values()) if shares is not None else []
    if held:
        print(f"| cpus held per user at the end (min / max) | {held[0]:g} / {held[-1]:g} |")
    mib = f"{warm / 2**20:.1f} / {end / 2**20:.1f} MiB"
    print(f"| resident memory after warm-up / at the end | {mib} |")


if __name__ == "__main__":
    main()

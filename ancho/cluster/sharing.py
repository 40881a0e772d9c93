"""The shared-cluster measurement of issue 13, on a real ``ancho cluster`` and server.

One user submits ``big_runs`` runs of ``big_sequences`` sequences; a second later a
second user submits one run of ``small_sequences``. The model sleeps ``work_ms`` per
sequence, so an agent's cpus are slots that a 2-core machine can fill. Measured: the
small run's time from submission to its end, alone on the same cluster and among the
others, and how busy the cluster's cpus were: the cpu-seconds during which batches ran
(from each batch task's TASK_RUNNING to its end, in the leading master's state) over the
cluster's cpus times the time from the first submission to the last end.

Used by ``tests/cluster/test_sharing.py`` (the checks) and ``bench/fair_share.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ancho.client import Client

ANCHO = str(Path(sys.executable).parent / "ancho")


@dataclass(slots=True, frozen=True)
class Workload:
    """What is submitted, and where it runs."""

    model: Path
    agents: int = 2
    cpus: int = 2
    work_ms: float = 10.0
    big_runs: int = 4
    big_sequences: int = 1500
    small_sequences: int = 300
    small_after_s: float = 1.0


@dataclass(slots=True, frozen=True)
class Figures:
    """The small run's time alone and shared, and the cpus' busy fraction."""

    small_alone_s: float
    small_shared_s: float
    busy: float
    makespan_s: float
    small_finished_last: bool
    #: The model's own work over cpus x makespan: the busy fraction's floor, less the
    #: executors' per-sequence overhead.
    work_fraction: float


class Site:
    """An ``ancho cluster`` of its own, a SQLite store with two users, and a server."""

    def __init__(self, workload: Workload, folder: Path, ports: tuple[int, int, int],
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        self.workload, self.folder = workload, folder
        self.env = {**os.environ, **(env or {}), "ANCHO_CLUSTER_DIR": str(folder / "cluster"),
                    "ANCHO_CLUSTER_PORTS": ",".join(map(str, ports))}  # fmt: skip
        for key in ("ANCHO_STORE", "ANCHO_SERVER", "ANCHO_TOKEN"):
            self.env.pop(key, None)
        self.store = f"sqlite:///{folder / 'ancho.db'}"
        self.server: subprocess.Popen[str] | None = None
        self.clients: dict[str, Client] = {}
        self.sources: dict[str, str] = {}
        self.masters: list[str] = []

    def _ancho(self, *args: str, **env: str) -> str:
        done = subprocess.run([ANCHO, *args], cwd=self.folder, env={**self.env, **env},
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"ancho {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def start(self) -> Site:
        w = self.workload
        status = json.loads(self._ancho("cluster", "start", "--agents", str(w.agents),
                                        "--cpus", str(w.cpus), "--mem-mb", "4096"))  # fmt: skip
        self.masters = [m["address"] for m in status["masters"]]
        tokens = {name: json.loads(self._ancho("user", "add", name, "--store", self.store))
                  ["token"] for name in ("ann", "bob")}  # fmt: skip
        log = (self.folder / "server.log").open("a")
        self.server = subprocess.Popen(
            [ANCHO, "server", "--master", status["master"], "--bind", "127.0.0.1:0"],
            cwd=self.folder, env={**self.env, "ANCHO_STORE": self.store},
            stdout=subprocess.PIPE, stderr=log, text=True,
        )  # fmt: skip
        assert self.server.stdout is not None
        line = self.server.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"the server did not start: {line!r}")
        url = line.split("listening on ", 1)[1].split()[0]
        for name, token in tokens.items():
            self.clients[name] = client = Client(url, token)
            self.sources[name] = client.upload_model(w.model)
        return self

    def submit(self, user: str, sequences: int, name: str) -> str:
        spec = {"name": name, "model": {"source": self.sources[user],
                                        "entrypoint": "model:simulate"},
                "parameters": {"sleep_s": self.workload.work_ms / 1000.0},
                "sequences": sequences, "seed": 1}  # fmt: skip
        run_id: str = self.clients[user].submit(spec)["id"]
        return run_id

    def wait(self, user: str, run_ids: list[str], timeout_s: float = 600.0) -> list[Any]:
        """The runs once all have ended (their API documents)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            docs = [self.clients[user].run(r) for r in run_ids]
            if all(d["state"] in ("FINISHED", "FAILED", "KILLED") for d in docs):
                if any(d["state"] != "FINISHED" for d in docs):
                    raise RuntimeError(f"a run did not finish: {docs}")
                return docs
            time.sleep(0.2)
        raise RuntimeError(f"runs {run_ids} still going after {timeout_s:g} s")

    def batch_cpu_seconds(self, since: float, until: float) -> float:
        """The cpu-seconds batch tasks ran between ``since`` and ``until`` (an executor
        runs its batches one after another, so they never overlap on its cpus)."""
        for address in self.masters:
            with urllib.request.urlopen(f"http://{address}/master/state", timeout=10) as r:
                state = json.loads(r.read())
            if state.get("leader", "").endswith(address) or len(self.masters) == 1:
                break
        total = 0.0
        for framework in state["frameworks"]:
            for task in framework.get("tasks", []) + framework.get("completed_tasks", []):
                statuses = task.get("statuses", [])
                running = [float(s["timestamp"]) for s in statuses
                           if s["state"] == "TASK_RUNNING"]  # fmt: skip
                ends = [
                    float(s["timestamp"])
                    for s in statuses
                    if s["state"] not in ("TASK_RUNNING", "TASK_STAGING", "TASK_STARTING")
                ]
                if not running or not ends:
                    continue
                start, end = max(min(running), since), min(max(ends), until)
                total += max(0.0, end - start)  # each run's executors hold 1 cpu
        return total

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(60)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        subprocess.run([ANCHO, "cluster", "stop"], cwd=self.folder, env=self.env,
                       capture_output=True, timeout=120)  # fmt: skip


def measure(site: Site) -> Figures:
    """The small run alone, then the big runs with the small one a second later."""
    w = site.workload
    small = site.submit("bob", w.small_sequences, "small-alone")
    [alone] = site.wait("bob", [small])
    small_alone = float(alone["finished_at"]) - float(alone["created_at"])
    time.sleep(2.0)  # the alone run's executors exit (they stop when it ends)
    first = time.time()
    bigs = [site.submit("ann", w.big_sequences, f"big-{i}") for i in range(w.big_runs)]
    time.sleep(max(0.0, first + w.small_after_s - time.time()))
    small = site.submit("bob", w.small_sequences, "small")
    docs = site.wait("ann", bigs)
    [shared] = site.wait("bob", [small])
    ends = [float(d["finished_at"]) for d in docs]
    last = max([*ends, float(shared["finished_at"])])
    makespan = last - first
    work = (w.big_runs * w.big_sequences + w.small_sequences) * w.work_ms / 1000.0
    capacity = w.agents * w.cpus * makespan
    return Figures(
        small_alone_s=small_alone,
        small_shared_s=float(shared["finished_at"]) - float(shared["created_at"]),
        busy=site.batch_cpu_seconds(first, last) / capacity,
        makespan_s=makespan,
        small_finished_last=float(shared["finished_at"]) >= max(ends),
        work_fraction=work / capacity,
    )

"""Figures of ``ancho cluster`` (not a test): start-up, leader failover, agent loss.

Measures, in one run on this machine, three times each (median and range):

1. ``ancho cluster start --agents 3 --masters 3``: from the command to every agent
   registered with the leader, beside the single-node ``EmbeddedCluster`` start that
   ``ancho run`` uses;
2. leader failover: from SIGKILL of the leading master to an unmodified pymesos
   framework re-subscribed (``reregistered``) and to its first offer from the new
   leader;
3. agent-loss detection: from SIGKILL of an agent to the framework's TASK_LOST, with
   test flags (``agent_ping_timeout`` 0.3 s x 5) and, once, with Mesos' defaults
   (15 s x 5);
4. once (``--cassandra``): ``ancho cluster start --agents 1 --cassandra 3`` beside the
   same start without Cassandra and one Cassandra node started on its own.

Prints a Markdown report. Usage: ``python bench/cluster_bench.py [--skip-default] [--cassandra]``.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from embedded.conftest import Recorder, framework_info, make_task  # noqa: E402
from pymesos import MesosSchedulerDriver  # noqa: E402

from ancho.cluster.cassandra import CassandraNode  # noqa: E402
from ancho.cluster.supervisor import Cluster, Layout  # noqa: E402
from ancho.embedded import EmbeddedCluster  # noqa: E402

ANCHO = str(Path(sys.executable).parent / "ancho")


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _layout(**flags: Any) -> Layout:
    return Layout(zk_port=_port(), master_port=_port(), agent_port=_port(),
                  containerizers="process", **flags)  # fmt: skip


def _summary(values: list[float]) -> str:
    if max(values) < 1.0:
        ms = [v * 1000 for v in values]
        return f"{statistics.median(ms):.1f} ms ({min(ms):.1f}-{max(ms):.1f})"
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


def bench_start(repeats: int) -> tuple[list[float], list[float]]:
    cluster_s, single_s = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            layout = _layout()
            env = {"ANCHO_CLUSTER_DIR": f"{tmp}/cluster",
                   "ANCHO_CLUSTER_PORTS": f"{layout.zk_port},{layout.master_port},"
                                          f"{layout.agent_port}"}  # fmt: skip
            began = time.monotonic()
            done = subprocess.run(
                [ANCHO, "cluster", "start", "--agents", "3", "--masters", "3"],
                env={**os.environ, **env}, capture_output=True, text=True,
            )  # fmt: skip
            cluster_s.append(time.monotonic() - began)
            subprocess.run([ANCHO, "cluster", "stop"], env={**os.environ, **env},
                           capture_output=True)  # fmt: skip
            if done.returncode != 0:
                raise SystemExit(f"ancho cluster start failed: {done.stderr}")
            began = time.monotonic()
            single = EmbeddedCluster(Path(tmp) / "single", cpus=2)
            single.start()
            single_s.append(time.monotonic() - began)
            single.stop()
    return cluster_s, single_s


def _framework(cluster: Cluster, **info: Any) -> tuple[MesosSchedulerDriver, Recorder]:
    recorder = Recorder()
    driver = MesosSchedulerDriver(recorder, framework_info(**info), cluster.zk_url)
    driver.start()
    recorder.wait("registered", timeout=60)
    return driver, recorder


def bench_failover(repeats: int) -> tuple[list[float], list[float]]:
    resubscribed, offering = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            cluster = Cluster(Path(tmp) / "cluster", _layout())
            cluster.start(agents=1, masters=3, cpus=1, mem_mb=512)
            driver, recorder = _framework(cluster, failover_timeout=60.0)
            try:
                recorder.new_offer(timeout=60)
                offers = len(recorder.all("offer"))
                began = time.monotonic()
                cluster.kill("leader")
                recorder.wait("reregistered", timeout=120)
                resubscribed.append(time.monotonic() - began)
                recorder.new_offer(after=offers, timeout=120)
                offering.append(time.monotonic() - began)
            finally:
                driver.stop()
                driver.join()
                cluster.stop()
    return resubscribed, offering


def bench_agent_loss(repeats: int, ping_s: float, pings: int) -> list[float]:
    detected = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            layout = _layout(agent_ping_timeout_s=ping_s, max_agent_ping_timeouts=pings)
            cluster = Cluster(Path(tmp) / "cluster", layout)
            cluster.start(agents=1, masters=1, cpus=1, mem_mb=512)
            driver, recorder = _framework(cluster)
            try:
                offer = recorder.new_offer(timeout=60)
                driver.launchTasks([offer["id"]], [make_task(offer, "t", {"mode": "run"})])
                recorder.wait_status("t", "TASK_RUNNING", timeout=60)
                began = time.monotonic()
                cluster.kill("agent", offer["agent_id"]["value"])
                recorder.wait_status("t", "TASK_LOST", timeout=ping_s * pings + 60)
                detected.append(time.monotonic() - began)
            finally:
                driver.stop()
                driver.join()
                cluster.stop()
    return detected


def bench_ring() -> tuple[float, float, float]:
    """Seconds for ``start(agents=1, cassandra=3)``, for ``start(agents=1)``, and for one
    Cassandra node started on its own."""
    timings = []
    for nodes in (3, 0):
        with tempfile.TemporaryDirectory() as tmp:
            cluster = Cluster(Path(tmp) / "cluster", _layout())
            began = time.monotonic()
            try:
                cluster.start(agents=1, masters=1, cpus=1, mem_mb=512, cassandra=nodes)
                timings.append(time.monotonic() - began)
            finally:
                cluster.stop()
    with tempfile.TemporaryDirectory() as tmp:
        node = CassandraNode(Path(tmp) / "one", host="127.0.0.21", heap="512M", jmx_port=7299)
        began = time.monotonic()
        node.start()
        timings.append(time.monotonic() - began)
        node.stop()
    return timings[0], timings[1], timings[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-default", action="store_true", help="No 75 s default run.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cassandra", action="store_true", help="Also time a 3-node ring.")
    args = parser.parse_args()
    ring = bench_ring() if args.cassandra else None
    cluster_s, single_s = bench_start(args.repeats)
    resubscribed, offering = bench_failover(args.repeats)
    loss_test = bench_agent_loss(args.repeats, 0.3, 5)
    loss_default = [] if args.skip_default else bench_agent_loss(1, 15.0, 5)
    print("| figure | this run |")
    print("|---|---|")
    print(f"| `ancho cluster start --agents 3 --masters 3` to every agent registered "
          f"| {_summary(cluster_s)} |")  # fmt: skip
    print(f"| baseline: single-node `EmbeddedCluster.start()` (`ancho run`) "
          f"| {_summary(single_s)} |")  # fmt: skip
    print(f"| leader SIGKILL to framework re-subscribed | {_summary(resubscribed)} |")
    print(f"| leader SIGKILL to the first offer from the new leader | {_summary(offering)} |")
    print(f"| agent SIGKILL to TASK_LOST, agent_ping_timeout 0.3 s x 5 "
          f"| {_summary(loss_test)} |")  # fmt: skip
    if loss_default:
        print(f"| agent SIGKILL to TASK_LOST, Mesos' defaults 15 s x 5 "
              f"| {_summary(loss_default)} |")  # fmt: skip
    if ring:
        print(f"| `ancho cluster start --agents 1 --cassandra 3` | {ring[0]:.1f} s |")
        print(f"| baseline: `ancho cluster start --agents 1` | {ring[1]:.1f} s |")
        print(f"| baseline: one Cassandra node on its own | {ring[2]:.1f} s |")


if __name__ == "__main__":
    main()

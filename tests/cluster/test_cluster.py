"""`ancho cluster` end to end: a real ZooKeeper, embedded masters and agents as their own
processes on their own loopback addresses, a run placed across agents, and a stop that
leaves nothing behind."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from e2e import EXAMPLES, ancho, run_id_of

from ancho.cluster.supervisor import alive, processes_under


def _state(address: str) -> Any:
    with urllib.request.urlopen(f"http://{address}/master/state", timeout=10) as response:
        return json.loads(response.read())


def test_a_run_spreads_over_agents_gives_the_single_node_results_and_stop_cleans_up(
    cluster_env: dict[str, str], tmp_path: Path
) -> None:
    started = ancho("cluster", "start", "--agents", "3", "--cpus", "1", "--mem-mb", "1024",
                    cwd=tmp_path, env=cluster_env)  # fmt: skip
    assert started.code == 0, started.stderr
    status = started.json()
    assert status["master"].startswith("zk://127.0.0.1:") and status["master"].endswith("/mesos")
    assert [m["leader"] for m in status["masters"]] == [True]
    agents = status["agents"]
    assert len(agents) == 3 and all(a["registered"] for a in agents)
    assert len({a["address"].split(":")[0] for a in agents}) == 3  # own loopback addresses
    assert all(a["address"].startswith("127.0.0.") for a in agents)
    assert status["zookeeper"]["pid"] and status["cassandra"] is None

    args = ["--sequences", "600", "--seed", "11", "--executors", "3", "-p", "samples=200"]
    on_cluster = ancho("run", str(EXAMPLES / "pi"), *args, "--master", status["master"],
                       "--store", f"sqlite:///{tmp_path / 'cluster.db'}", cwd=tmp_path,
                       env=cluster_env)  # fmt: skip
    assert on_cluster.code == 0, on_cluster.stderr
    master = status["masters"][0]["address"]
    frameworks = _state(master)["completed_frameworks"]
    used = {t["slave_id"] for f in frameworks for t in f["completed_tasks"]}
    assert len(used) > 1, f"every executor ran on one agent: {used}"

    single = ancho("run", str(EXAMPLES / "pi"), *args,
                   "--store", f"sqlite:///{tmp_path / 'single.db'}", cwd=tmp_path)  # fmt: skip
    assert single.code == 0, single.stderr

    def results(result: Any, db: str) -> str:
        out = ancho("results", run_id_of(result), "--store", f"sqlite:///{tmp_path / db}",
                    cwd=tmp_path)  # fmt: skip
        assert out.code == 0, out.stderr
        return out.stdout

    assert results(on_cluster, "cluster.db") == results(single, "single.db")

    pids = [a["pid"] for a in agents] + [m["pid"] for m in status["masters"]]
    pids.append(status["zookeeper"]["pid"])
    stopped = ancho("cluster", "stop", cwd=tmp_path, env=cluster_env)
    assert stopped.code == 0, stopped.stderr
    assert not [p for p in pids if alive(p)]
    assert processes_under(Path(cluster_env["ANCHO_CLUSTER_DIR"])) == []
    again = ancho("cluster", "stop", cwd=tmp_path, env=cluster_env)  # idempotent
    assert again.code == 0
    after = ancho("cluster", "status", cwd=tmp_path, env=cluster_env).json()
    assert after["masters"] == [] and after["agents"] == []


def test_a_standby_master_redirects_and_takes_over_when_the_leader_is_killed(
    cluster_env: dict[str, str], tmp_path: Path
) -> None:
    started = ancho("cluster", "start", "--agents", "1", "--masters", "2",
                    cwd=tmp_path, env=cluster_env)  # fmt: skip
    assert started.code == 0, started.stderr
    masters = started.json()["masters"]
    leader = next(m for m in masters if m["leader"])
    standby = next(m for m in masters if not m["leader"])

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.request.HTTPError) as info:
        opener.open(f"http://{standby['address']}/master/state?x=1", timeout=10)
    assert info.value.code == 307
    assert info.value.headers["Location"] == f"//{leader['address']}/master/state?x=1"

    killed = ancho("cluster", "kill", "leader", cwd=tmp_path, env=cluster_env)
    assert killed.code == 0, killed.stderr
    assert not alive(leader["pid"])

    def new_leader() -> Any:
        status = ancho("cluster", "status", cwd=tmp_path, env=cluster_env).json()
        return [m for m in status["masters"] if m["leader"]]

    deadline = time.monotonic() + 30
    while not new_leader() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [m["address"] for m in new_leader()] == [standby["address"]]
    # The agent re-registers with the new leader.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if len(_state(standby["address"])["slaves"]) == 1:
            break
        time.sleep(0.2)
    assert len(_state(standby["address"])["slaves"]) == 1

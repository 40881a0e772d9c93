"""How the multi-process cluster fails, as Mesos 1.11 fails, seen by unmodified pymesos:
a dead agent is marked unreachable after agent_ping_timeout times
max_agent_ping_timeouts, and a killed leader is replaced by a standby that frameworks
and agents find through ZooKeeper, with the running task still running."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from embedded.conftest import RawStream, Recorder, framework_info, make_task, running_report
from pymesos import MesosSchedulerDriver

from ancho.cluster.ports import cluster_port
from ancho.cluster.supervisor import Cluster, Layout, alive


class Lost(Recorder):
    def slaveLost(self, driver: Any, agent_id: Any) -> None:
        self._add("agent_lost", agent_id)


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Any]:
    made: list[Cluster] = []

    def make(**layout: Any) -> Cluster:
        cluster = Cluster(
            tmp_path / "cluster",
            Layout(zk_port=cluster_port(), master_port=cluster_port(), agent_port=cluster_port(),
                   containerizers="process", **layout),
        )  # fmt: skip
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop()


@pytest.fixture
def drivers() -> Iterator[list[MesosSchedulerDriver]]:
    started: list[MesosSchedulerDriver] = []
    yield started
    for driver in started:
        driver.stop()
        driver.join()


def _framework(cluster: Cluster, started: list[MesosSchedulerDriver], **info: Any) -> Lost:
    recorder = Lost()
    driver = MesosSchedulerDriver(recorder, framework_info(**info), cluster.zk_url)
    driver.start()
    started.append(driver)
    recorder.wait("registered", timeout=30)
    return recorder


def _launch(recorder: Lost, driver: MesosSchedulerDriver, task_id: str) -> Any:
    offer = recorder.new_offer(timeout=30)
    driver.launchTasks([offer["id"]], [make_task(offer, task_id, {"mode": "run"})])
    running = recorder.wait_status(task_id, "TASK_RUNNING", timeout=30)
    return offer, running


def test_a_dead_agent_is_unreachable_after_the_ping_timeouts(
    make_cluster: Any, drivers: list[MesosSchedulerDriver]
) -> None:
    cluster = make_cluster(agent_ping_timeout_s=0.3, max_agent_ping_timeouts=5)
    cluster.start(agents=2, masters=1, cpus=1, mem_mb=512)
    classic = _framework(cluster, drivers)
    aware = _framework(cluster, drivers, capabilities=[{"type": "PARTITION_AWARE"}])
    offer, _ = _launch(classic, drivers[0], "classic-task")
    agent_id = offer["agent_id"]["value"]
    # The partition-aware framework's task goes to the same agent.
    aware_offer = aware.new_offer(timeout=30)
    while aware_offer["agent_id"]["value"] != agent_id:
        drivers[1].declineOffer([aware_offer["id"]], {"refuse_seconds": 60})
        aware_offer = aware.new_offer(after=len(aware.all("offer")), timeout=30)
    drivers[1].launchTasks([aware_offer["id"]], [make_task(aware_offer, "aware-task",
                                                            {"mode": "run"})])  # fmt: skip
    aware.wait_status("aware-task", "TASK_RUNNING", timeout=30)

    killed_at = time.monotonic()
    cluster.kill("agent", agent_id)
    lost = classic.wait_status("classic-task", "TASK_LOST", timeout=30)
    detected_after = time.monotonic() - killed_at
    assert lost["reason"] == "REASON_SLAVE_REMOVED" and lost["source"] == "SOURCE_MASTER"
    unreachable = aware.wait_status("aware-task", "TASK_UNREACHABLE", timeout=30)
    assert unreachable["reason"] == "REASON_SLAVE_REMOVED"
    assert classic.wait("agent_lost")["value"] == agent_id
    # 0.3 s x 5 pings, detected on the master's tick: not before, and not much after.
    assert 1.5 <= detected_after < 10.0, detected_after
    state = cluster.status()
    assert [a["registered"] for a in state["agents"]].count(True) == 1


def test_a_killed_leader_is_replaced_and_the_running_task_keeps_running(
    make_cluster: Any, drivers: list[MesosSchedulerDriver]
) -> None:
    cluster = make_cluster()
    cluster.start(agents=1, masters=2, cpus=1, mem_mb=512)
    recorder = _framework(cluster, drivers, failover_timeout=60.0, checkpoint=True)
    framework_id = recorder.all("registered")[0]["value"]
    _, running = _launch(recorder, drivers[0], "long-task")
    executor_pid = running_report(running)["pid"]

    old = cluster.leader()
    offers_before = len(recorder.all("offer"))
    cluster.kill("leader")
    recorder.wait("reregistered", timeout=60)  # pymesos re-subscribes with its id
    new = cluster.leader()
    assert new is not None and new != old
    assert alive(executor_pid)
    state: dict[str, Any] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://{new}/master/state", timeout=5) as response:
            state = json.loads(response.read())
        tasks = [t for f in state["frameworks"] for t in f["tasks"]]
        if state["slaves"] and tasks:
            break
        time.sleep(0.2)
    assert [f["id"] for f in state["frameworks"]] == [framework_id]
    assert [(t["id"], t["state"]) for t in state["frameworks"][0]["tasks"]] == [
        ("long-task", "TASK_RUNNING")
    ]
    # Offers flow again from the new leader.
    recorder.new_offer(after=offers_before, timeout=30)


def test_a_partitioned_agent_is_unreachable_then_comes_back_with_partition_aware_tasks(
    make_cluster: Any, drivers: list[MesosSchedulerDriver]
) -> None:
    cluster = make_cluster(agent_ping_timeout_s=0.3, max_agent_ping_timeouts=5)
    cluster.start(agents=1, masters=1, cpus=1, mem_mb=512)
    classic = _framework(cluster, drivers)
    aware = _framework(cluster, drivers, capabilities=[{"type": "PARTITION_AWARE"}])
    offer, classic_running = _launch(classic, drivers[0], "classic-task")
    _, aware_running = _launch(aware, drivers[1], "aware-task")
    agent_id = offer["agent_id"]["value"]

    cluster.partition(agent_id, seconds=4.0)  # dropped in the kernel, healed after 4 s
    classic.wait_status("classic-task", "TASK_LOST", timeout=30)
    aware.wait_status("aware-task", "TASK_UNREACHABLE", timeout=30)
    # Healed, the agent re-registers under its id: the partition-aware task is known
    # (and running) again; the classic framework's executor is shut down.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        agents = cluster.status()["agents"]
        if agents[0]["registered"]:
            break
        time.sleep(0.2)
    assert agents[0]["id"] == agent_id and agents[0]["registered"]
    drivers[1].reconcileTasks([{"task_id": {"value": "aware-task"}}])
    aware.wait(
        "status",
        lambda s: s["task_id"]["value"] == "aware-task" and s["state"] == "TASK_RUNNING"
        and s.get("reason") == "REASON_RECONCILIATION",
        timeout=30,
    )  # fmt: skip
    assert alive(running_report(aware_running)["pid"])
    deadline = time.monotonic() + 30
    while alive(running_report(classic_running)["pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(running_report(classic_running)["pid"])


def test_a_restarted_agent_recovers_the_executors_that_re_subscribe_and_loses_the_others(
    make_cluster: Any, drivers: list[MesosSchedulerDriver]
) -> None:
    cluster = make_cluster(executor_reregistration_timeout_s=8.0)
    cluster.start(agents=1, masters=1, cpus=1, mem_mb=512)
    recorder = _framework(cluster, drivers, checkpoint=True, failover_timeout=60.0)
    driver = drivers[0]
    offer = recorder.new_offer(timeout=30)
    tasks = [make_task(offer, "kept", {"mode": "run"}, executor_id="exec-kept"),
             make_task(offer, "hung", {"mode": "run"}, executor_id="exec-hung")]  # fmt: skip
    driver.launchTasks([offer["id"]], tasks)
    kept = running_report(recorder.wait_status("kept", "TASK_RUNNING", timeout=30))
    hung = running_report(recorder.wait_status("hung", "TASK_RUNNING", timeout=30))
    agent_id = offer["agent_id"]["value"]

    os.kill(hung["pid"], signal.SIGSTOP)  # it cannot re-subscribe
    try:
        cluster.kill("agent", agent_id, restart=True)
        lost = recorder.wait_status("hung", "TASK_LOST", timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(hung["pid"], signal.SIGCONT)
    assert lost["reason"] == "REASON_EXECUTOR_REREGISTRATION_TIMEOUT"
    assert lost["message"] == "Executor did not reregister within 8secs"
    assert not alive(hung["pid"])
    assert alive(kept["pid"])  # the same process, re-subscribed to the new agent process
    assert cluster.status()["agents"][0]["id"] == agent_id
    driver.killTask({"value": "kept"})
    recorder.wait_status("kept", "TASK_KILLED", timeout=30)


def test_the_registry_survives_a_failover(
    make_cluster: Any, drivers: list[MesosSchedulerDriver]
) -> None:
    # Mesos tells only the frameworks subscribed at that moment that an agent is lost:
    # the re-registration window must outlast the framework's own failover (the old
    # leader's ZooKeeper session, then pymesos' reconnect backoff of 2, 4, 8 s), or the
    # event goes to nobody. 20 s covers it on a loaded machine.
    cluster = make_cluster(agent_reregister_timeout_s=20.0)
    cluster.start(agents=2, masters=2, cpus=1, mem_mb=512)
    aware = _framework(cluster, drivers, capabilities=[{"type": "PARTITION_AWARE"}],
                       failover_timeout=60.0)  # fmt: skip
    gone = _framework(cluster, drivers)
    gone_id = gone.all("registered")[0]["value"]
    drivers[1].stop()  # TEARDOWN: removed for good
    drivers[1].join()
    offer, _ = _launch(aware, drivers[0], "on-lost-agent")
    lost_agent = offer["agent_id"]["value"]
    cluster.kill("agent", lost_agent)  # dead, but not yet noticed (pings: 15 s x 5)
    cluster.kill("leader")
    aware.wait("reregistered", timeout=60)
    new = cluster.leader()
    assert new is not None

    # The removed framework stays removed under the new leader.
    info = framework_info(id={"value": gone_id})
    subscribe = {"type": "SUBSCRIBE", "framework_id": {"value": gone_id},
                 "subscribe": {"framework_info": info}}  # fmt: skip
    stream = RawStream(new, subscribe)
    try:
        assert stream.next_event()["error"]["message"] == "Framework has been removed"
    finally:
        stream.close()
    # The dead agent misses --agent_reregister_timeout and becomes unreachable: the
    # framework hears of it, and reconciling its task says so.
    assert aware.wait("agent_lost", timeout=60)["value"] == lost_agent
    before = len(aware.all("status"))
    # pymesos' reconcileTasks drops agent_id: send the RECONCILE call it would, with it.
    task = {"task_id": {"value": "on-lost-agent"}, "agent_id": {"value": lost_agent}}
    drivers[0]._send(
        {"type": "RECONCILE", "framework_id": {"value": drivers[0].framework_id},
         "reconcile": {"tasks": [task]}}
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while len(aware.all("status")) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    reconciled = aware.all("status")[before:]
    assert [(s["state"], s["reason"]) for s in reconciled] == [
        ("TASK_UNREACHABLE", "REASON_RECONCILIATION")
    ]
    assert (
        json.loads(urllib.request.urlopen(f"http://{new}/master/state").read())[
            "unreachable_slaves"
        ]
        == 1.0
    )


def test_tasks_ended_but_unacknowledged_are_known_to_a_new_leader(
    make_cluster: Any, drivers: list[MesosSchedulerDriver]
) -> None:
    # Mesos' agent re-registers with its terminated tasks whose terminal update is not
    # acknowledged, those of ended executors too: a new leader reconciles them with
    # their terminal state, not TASK_GONE ("unknown to the agent"), which would make a
    # framework run again what has finished.
    cluster = make_cluster()
    cluster.start(agents=1, masters=2, cpus=1, mem_mb=512)
    recorder = Lost()
    info = framework_info(capabilities=[{"type": "PARTITION_AWARE"}], failover_timeout=60.0,
                          checkpoint=True)  # fmt: skip
    driver = MesosSchedulerDriver(recorder, info, cluster.zk_url, implicit_acknowledgements=False)
    driver.start()
    drivers.append(driver)
    recorder.wait("registered", timeout=30)
    offer = recorder.new_offer(timeout=30)
    tasks = [make_task(offer, "finished", {"mode": "finish"}, executor_id="exec-finished"),
             make_task(offer, "failed", {"mode": "run"}, executor_id="exec-failed")]  # fmt: skip
    driver.launchTasks([offer["id"]], tasks)
    for task_id in ("finished", "failed"):
        driver.acknowledgeStatusUpdate(recorder.wait_status(task_id, "TASK_RUNNING", timeout=30))
    recorder.wait_status("finished", "TASK_FINISHED", timeout=30)  # not acknowledged
    failed_pid = running_report(recorder.statuses("failed", "TASK_RUNNING")[0])["pid"]
    os.kill(failed_pid, signal.SIGKILL)  # its executor ends; TASK_FAILED not acknowledged
    recorder.wait_status("failed", "TASK_FAILED", timeout=30)

    cluster.kill("leader")
    recorder.wait("reregistered", timeout=60)
    agent_id = offer["agent_id"]["value"]
    deadline = time.monotonic() + 30
    while not cluster.status()["agents"][0]["registered"] and time.monotonic() < deadline:
        time.sleep(0.2)
    before = len(recorder.all("status"))
    wanted = [{"task_id": {"value": t}, "agent_id": {"value": agent_id}}
              for t in ("finished", "failed")]  # fmt: skip
    driver._send(
        {"type": "RECONCILE", "framework_id": {"value": driver.framework_id},
         "reconcile": {"tasks": wanted}}
    )  # fmt: skip

    def answers() -> dict[str, str]:
        statuses = recorder.all("status")[before:]
        return {s["task_id"]["value"]: s["state"] for s in statuses
                if s.get("reason") == "REASON_RECONCILIATION"}  # fmt: skip

    deadline = time.monotonic() + 30
    while len(answers()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert answers() == {"finished": "TASK_FINISHED", "failed": "TASK_FAILED"}
    assert not [s for s in recorder.all("status") if s["state"] == "TASK_GONE"]

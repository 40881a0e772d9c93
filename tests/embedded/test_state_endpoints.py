"""State endpoints: ``/master/state`` and the agent's ``/state`` in Mesos 1.11's JSON shape,
driven by unmodified pymesos (shapes as in Mesos' src/common/http.cpp, the master's
read-only handler and the agent's Http::state)."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

from ancho.embedded import EmbeddedCluster

from .conftest import EXECUTOR_COMMAND, TIMEOUT, DriverFactory, make_task, wait_until

MASTER_KEYS = {
    "version", "build_date", "build_time", "build_user", "start_time", "elected_time", "id",
    "pid", "hostname", "capabilities", "activated_slaves", "deactivated_slaves",
    "unreachable_slaves", "leader", "leader_info", "flags", "slaves", "recovered_slaves",
    "frameworks", "completed_frameworks", "orphan_tasks", "unregistered_frameworks",
}  # fmt: skip
FRAMEWORK_KEYS = {
    "id", "name", "used_resources", "offered_resources", "capabilities", "hostname",
    "webui_url", "active", "connected", "recovered", "user", "failover_timeout",
    "checkpoint", "registered_time", "unregistered_time", "resources", "role", "tasks",
    "unreachable_tasks", "completed_tasks", "offers", "executors", "offer_constraints",
}  # fmt: skip
TASK_KEYS = {
    "id", "name", "framework_id", "executor_id", "slave_id", "state", "resources", "role",
    "statuses",
}  # fmt: skip
AGENT_KEYS = {
    "version", "build_date", "build_time", "build_user", "start_time", "id", "pid",
    "hostname", "capabilities", "resources", "reserved_resources", "unreserved_resources",
    "reserved_resources_full", "unreserved_resources_full", "reserved_resources_allocated",
    "unreserved_resources_allocated", "resource_providers", "attributes", "master_hostname",
    "flags", "frameworks", "completed_frameworks",
}  # fmt: skip
AGENT_EXECUTOR_KEYS = {
    "id", "name", "source", "container", "directory", "resources", "role", "tasks",
    "queued_tasks", "completed_tasks",
}  # fmt: skip


def get(address: str, path: str) -> tuple[int, str, str]:
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read().decode()
    finally:
        conn.close()


def state(address: str, path: str = "/master/state") -> dict[str, Any]:
    status, content_type, body = get(address, path)
    assert status == 200 and content_type == "application/json", (status, body)
    doc: dict[str, Any] = json.loads(body)
    return doc


def resources(cpus: float, mem: float, disk: float = 0.0, **more: Any) -> dict[str, Any]:
    return {"cpus": cpus, "gpus": 0.0, "mem": mem, "disk": disk, **more}


def test_master_state_of_an_idle_cluster(cluster: EmbeddedCluster) -> None:
    doc = state(cluster.address)
    assert set(doc) == MASTER_KEYS
    pid = f"master@{cluster.address}"
    assert doc["version"] == "1.11.0" and doc["pid"] == doc["leader"] == pid
    assert doc["leader_info"] == {"id": doc["id"], "pid": pid, "hostname": "127.0.0.1",
                                  "port": int(cluster.address.split(":")[1])}  # fmt: skip
    assert doc["elected_time"] >= doc["start_time"] > 0 and doc["activated_slaves"] == 1
    assert doc["frameworks"] == doc["completed_frameworks"] == doc["orphan_tasks"] == []
    assert all(isinstance(v, str) for v in doc["flags"].values())
    [agent] = doc["slaves"]
    total = resources(4.0, 4096.0, 10000.0, ports="[31000-32000]")
    assert agent["id"] == cluster.agent_id and agent["pid"] == f"slave(1)@{cluster.address}"
    assert agent["resources"] == agent["unreserved_resources"] == total
    assert agent["used_resources"] == resources(0.0, 0.0)
    assert agent["active"] is True and agent["deactivated"] is False
    assert agent["attributes"] == {} and agent["reserved_resources"] == {}


def test_master_state_shows_offers_tasks_and_executors_as_mesos(
    cluster: EmbeddedCluster, start_framework: DriverFactory
) -> None:
    driver, sched = start_framework(hostname="fw-host", checkpoint=True, failover_timeout=9.5)
    framework_id = sched.wait("registered")["value"]
    offer = sched.new_offer()
    doc = state(cluster.address)
    [framework] = doc["frameworks"]
    assert set(framework) == FRAMEWORK_KEYS
    assert framework["id"] == framework_id and framework["name"] == "ancho-embedded-test"
    assert framework["active"] is framework["connected"] is True
    assert (framework["hostname"], framework["checkpoint"], framework["failover_timeout"]) == (
        "fw-host", True, 9.5)  # fmt: skip
    assert framework["role"] == "*" and "pid" not in framework  # an HTTP framework
    [shown] = framework["offers"]
    assert shown["id"] == offer["id"]["value"] and shown["slave_id"] == cluster.agent_id
    assert shown["allocation_info"] == {"role": "*"} and shown["resources"]["cpus"] == 4.0

    marker = "task-data-marker"
    env = {"variables": [{"name": "ANCHO_TEST", "value": "shown as Mesos shows it"}]}
    labels = {"labels": [{"key": "k", "value": "v"}]}
    task = make_task(offer, "st1", {"mode": "run", "marker": marker},
                     command={"value": EXECUTOR_COMMAND, "environment": env},
                     name="the executor", labels=labels)  # fmt: skip
    driver.launchTasks(offer["id"], [task])
    running = sched.wait_status("st1", "TASK_RUNNING")
    doc = state(cluster.address)
    [framework] = doc["frameworks"]
    assert offer["id"]["value"] not in [o["id"] for o in framework["offers"]]  # accepted
    assert framework["completed_tasks"] == []
    [shown_task] = framework["tasks"]
    assert set(shown_task) == TASK_KEYS
    assert shown_task["id"] == "st1" and shown_task["state"] == "TASK_RUNNING"
    assert (shown_task["framework_id"], shown_task["executor_id"], shown_task["slave_id"]) == (
        framework_id, "exec-1", cluster.agent_id)  # fmt: skip
    assert shown_task["resources"] == resources(0.1, 32.0) and shown_task["role"] == "*"
    [status] = shown_task["statuses"]  # state and timestamp only: never data or message
    assert status == {"state": "TASK_RUNNING", "timestamp": running["timestamp"]}
    [executor] = framework["executors"]
    assert executor == {
        "executor_id": "exec-1",
        "name": "the executor",
        "framework_id": framework_id,
        "command": {
            "value": EXECUTOR_COMMAND,
            "argv": [],
            "environment": {"variables": [
                {"name": "ANCHO_TEST", "type": "VALUE", "value": "shown as Mesos shows it"}]},
            "uris": [],
        },
        "resources": resources(0.1, 32.0),
        "role": "*",
        "labels": [{"key": "k", "value": "v"}],
        "slave_id": cluster.agent_id,
    }  # fmt: skip
    assert framework["used_resources"] == resources(0.2, 64.0)
    assert doc["slaves"][0]["used_resources"] == resources(0.2, 64.0)
    # TaskInfo.data and status data are no part of any state.
    text = json.dumps(doc) + json.dumps(state(cluster.address, "/state"))
    assert marker not in text and task["data"] not in text and running["data"] not in text


def test_agent_state_shows_executors_with_their_tasks(
    cluster: EmbeddedCluster, start_framework: DriverFactory
) -> None:
    driver, sched = start_framework()
    framework_id = sched.wait("registered")["value"]
    offer = sched.new_offer()
    slow = {"command": {"value": f"sleep 2; exec {EXECUTOR_COMMAND}"}}
    driver.launchTasks(offer["id"], [make_task(offer, "ag1", {"mode": "run"}, **slow)])

    def queued() -> Any:
        frameworks = state(cluster.address, "/state")["frameworks"]
        return frameworks and frameworks[0]["executors"][0]["queued_tasks"]

    [waiting] = wait_until(queued, what="a queued task")  # the executor is still sleeping
    assert waiting == {"id": "ag1", "name": "ag1", "slave_id": cluster.agent_id,
                       "resources": resources(0.1, 32.0), "role": "*",
                       "executor_id": "exec-1"}  # fmt: skip
    sched.wait_status("ag1", "TASK_RUNNING")
    doc = state(cluster.address, "/slave(1)/state")
    assert set(doc) == AGENT_KEYS
    assert doc["id"] == cluster.agent_id and doc["pid"] == f"slave(1)@{cluster.address}"
    assert doc["resources"]["cpus"] == 4.0 and doc["unreserved_resources_full"][0]["role"] == "*"
    assert doc["unreserved_resources_allocated"] == resources(0.2, 64.0)
    [framework] = doc["frameworks"]
    assert framework["id"] == framework_id and framework["user"] and framework["role"] == "*"
    assert framework["completed_executors"] == []
    [executor] = framework["executors"]
    assert set(executor) == AGENT_EXECUTOR_KEYS  # no command: the agent does not show it
    assert executor["id"] == "exec-1" and Path(executor["directory"]).is_dir()
    assert executor["directory"].endswith(executor["container"])
    assert executor["resources"] == resources(0.2, 64.0) and executor["queued_tasks"] == []
    [task] = executor["tasks"]
    assert set(task) == TASK_KEYS and task["state"] == "TASK_RUNNING"
    assert [s["state"] for s in task["statuses"]] == ["TASK_RUNNING"]
    assert state(cluster.address, "/state")["frameworks"][0]["id"] == framework_id


def test_ended_tasks_executors_and_frameworks_are_completed(
    cluster: EmbeddedCluster, start_framework: DriverFactory
) -> None:
    driver, sched = start_framework()
    framework_id = sched.wait("registered")["value"]
    offer = sched.new_offer()
    driver.launchTasks(offer["id"], [make_task(offer, "c1", {"result": "done"})])
    sched.wait_status("c1", "TASK_FINISHED")  # acknowledged at once by pymesos

    def master_completed() -> Any:
        return state(cluster.address)["frameworks"][0]["completed_tasks"]

    [task] = wait_until(master_completed, what="c1 among the completed tasks")
    assert task["state"] == "TASK_FINISHED"
    assert [s["state"] for s in task["statuses"]] == ["TASK_RUNNING", "TASK_FINISHED"]
    assert state(cluster.address)["frameworks"][0]["tasks"] == []
    agent_framework = state(cluster.address, "/state")["frameworks"][0]
    assert [t["id"] for t in agent_framework["executors"][0]["completed_tasks"]] == ["c1"]

    driver.stop()  # TEARDOWN: the framework is removed, its executor shut down
    driver.join()

    def agent_completed() -> Any:
        return state(cluster.address, "/state")["completed_frameworks"]

    [gone] = wait_until(agent_completed, what="the agent's completed framework")
    assert gone["id"] == framework_id and gone["executors"] == []
    assert [e["id"] for e in gone["completed_executors"]] == ["exec-1"]
    doc = state(cluster.address)
    assert doc["frameworks"] == []
    [removed] = doc["completed_frameworks"]
    assert removed["id"] == framework_id and removed["active"] is removed["connected"] is False
    assert removed["unregistered_time"] >= removed["registered_time"] > 0
    assert [t["id"] for t in removed["completed_tasks"]] == ["c1"]
    assert removed["executors"] == [] and removed["offers"] == []


def test_unknown_paths_stay_404(cluster: EmbeddedCluster) -> None:
    assert get(cluster.address, "/master/state-summary")[0] == 404

"""Agent-side conformance: reliable updates, queued launches, containers, shutdown."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from ancho.embedded import EmbeddedCluster

from .conftest import (
    EXECUTOR_COMMAND,
    DriverFactory,
    RawStream,
    b64,
    group_alive,
    make_task,
    pid_alive,
    post,
    running_report,
    wait_until,
)


def _acked_messages(sched: object, task_id: str) -> list[object]:
    expected = b64(f"acked:{task_id}".encode())
    return sched.all("message", lambda m: m[2] == expected)  # type: ignore[attr-defined]


def test_updates_retried_until_acknowledged(
    cluster: EmbeddedCluster, start_framework: DriverFactory
) -> None:
    driver, sched = start_framework(implicit_acks=False)
    offer = sched.new_offer()
    driver.launchTasks(offer["id"], [make_task(offer, "u1", {"result": "done"})])
    # retry interval is 0.4 s: the RUNNING update comes again and again...
    wait_until(lambda: len(sched.statuses("u1", "TASK_RUNNING")) >= 3, what="retries")
    runs = sched.statuses("u1", "TASK_RUNNING")
    assert len({s["uuid"] for s in runs}) == 1
    # ...and FINISHED waits behind it: one update in flight per task.
    assert not sched.statuses("u1", "TASK_FINISHED")
    assert not _acked_messages(sched, "u1")
    driver.acknowledgeStatusUpdate(runs[0])
    finished = sched.wait_status("u1", "TASK_FINISHED")
    wait_until(lambda: _acked_messages(sched, "u1"), what="ACKNOWLEDGED at the executor")
    count = len(sched.statuses("u1", "TASK_RUNNING"))
    time.sleep(1.0)  # a negative check: two retry intervals without a RUNNING re-send
    assert len(sched.statuses("u1", "TASK_RUNNING")) == count
    wait_until(lambda: len(sched.statuses("u1", "TASK_FINISHED")) >= 2, what="FINISHED retries")
    driver.acknowledgeStatusUpdate(finished)
    wait_until(lambda: len(_acked_messages(sched, "u1")) == 2, what="second ACKNOWLEDGED")
    # A task whose terminal update is acknowledged is forgotten by the master.
    driver.reconcileTasks([{"task_id": {"value": "u1"}}])
    assert sched.wait_status("u1", "TASK_LOST")["reason"] == "REASON_RECONCILIATION"


def test_tasks_wait_for_executor_subscription_and_kill_during_launch(
    cluster: EmbeddedCluster, start_framework: DriverFactory
) -> None:
    driver, sched = start_framework()
    offer = sched.new_offer()
    slow = {"command": {"value": f"sleep 1; exec {EXECUTOR_COMMAND}"}}
    tasks = [
        make_task(offer, "q1", {"mode": "run"}, **slow),
        make_task(offer, "q2", {"mode": "run"}, **slow),
    ]
    driver.launchTasks(offer["id"], tasks)
    driver.killTask({"value": "q2"})  # the executor is still sleeping
    killed = sched.wait_status("q2", "TASK_KILLED")
    assert killed["reason"] == "REASON_TASK_KILLED_DURING_LAUNCH"
    assert killed["source"] == "SOURCE_AGENT"
    assert "uuid" in killed
    sched.wait_status("q1", "TASK_RUNNING")
    assert not sched.statuses("q2", "TASK_RUNNING")


def test_docker_container_fails_launch(
    cluster: EmbeddedCluster, start_framework: DriverFactory
) -> None:
    driver, sched = start_framework()
    offer = sched.new_offer()
    docker = {"type": "DOCKER", "docker": {"image": "ancho/executor:latest"}}
    driver.launchTasks(offer["id"], [make_task(offer, "dk", container=docker)])
    failed = sched.wait_status("dk", "TASK_FAILED")
    assert failed["reason"] == "REASON_CONTAINER_LAUNCH_FAILED"
    assert "DOCKER" in failed["message"]
    assert sched.wait("executor_lost")[2] == -1


def test_teardown_shuts_executors_down(
    cluster: EmbeddedCluster, start_framework: DriverFactory
) -> None:
    driver, sched = start_framework()
    offer = sched.new_offer()
    driver.launchTasks(offer["id"], [make_task(offer, "td", {"mode": "run"})])
    running = sched.wait_status("td", "TASK_RUNNING")
    pgid = running_report(running)["pgid"]
    driver.stop()  # pymesos sends TEARDOWN
    driver.join()
    wait_until(lambda: not pid_alive(pgid), what="executor exit after TEARDOWN")
    assert not group_alive(pgid)


def test_stop_kills_every_executor(
    cluster: EmbeddedCluster, start_framework: DriverFactory
) -> None:
    driver, sched = start_framework()
    offer = sched.new_offer()
    driver.launchTasks(
        offer["id"],
        [
            make_task(offer, "s1", {"mode": "run"}, executor_id="e1"),
            make_task(offer, "s2", {"mode": "run"}, executor_id="e2"),
        ],
    )
    groups = [running_report(sched.wait_status(t, "TASK_RUNNING"))["pgid"] for t in ("s1", "s2")]
    assert len(set(groups)) == 2
    started = time.monotonic()
    cluster.stop()
    assert time.monotonic() - started < 5
    for pgid in groups:
        assert not pid_alive(pgid)
        assert not group_alive(pgid)
    cluster.stop()  # idempotent
    leftovers = [t.name for t in threading.enumerate() if t.name.startswith("ancho-embedded")]
    assert not leftovers


def test_raw_executor_api_and_resubscription(
    cluster: EmbeddedCluster, start_framework: DriverFactory
) -> None:
    driver, sched = start_framework(implicit_acks=False)
    framework_id = sched.wait("registered")["value"]
    offer = sched.new_offer()
    # An executor process that never subscribes: this test plays the executor.
    task = make_task(offer, "x1", command={"value": "sleep 30"})
    driver.launchTasks(offer["id"], [task])
    ids = {"framework_id": {"value": framework_id}, "executor_id": {"value": "exec-1"}}
    path = "/api/v1/executor"
    update = {
        "type": "UPDATE",
        **ids,
        "update": {
            "status": {
                "task_id": {"value": "x1"},
                "state": "TASK_RUNNING",
                "uuid": b64(uuid.uuid4().bytes),
                "source": "SOURCE_EXECUTOR",
            }
        },
    }
    assert post(cluster.agent_endpoint, update, path=path)[0] == 403  # not subscribed yet
    unknown = dict(update, executor_id={"value": "nope"})
    assert post(cluster.agent_endpoint, unknown, path=path)[0] == 400

    first = RawStream(cluster.agent_endpoint, {"type": "SUBSCRIBE", **ids, "subscribe": {}}, path)
    subscribed = first.next_event()["subscribed"]
    assert subscribed["executor_info"]["executor_id"] == {"value": "exec-1"}
    assert subscribed["executor_info"]["framework_id"] == {"value": framework_id}
    assert subscribed["framework_info"]["id"] == {"value": framework_id}
    assert subscribed["agent_info"]["id"] == {"value": cluster.agent_id}
    assert subscribed["container_id"]["value"]
    assert first.wait_event("LAUNCH")["launch"]["task"]["task_id"] == {"value": "x1"}
    assert post(cluster.agent_endpoint, update, path=path)[0] == 202
    running = sched.wait_status("x1", "TASK_RUNNING")
    assert running["uuid"] == update["update"]["status"]["uuid"]

    # Re-subscribe, reporting the unacknowledged update and a new one.
    finished = {
        "task_id": {"value": "x1"},
        "state": "TASK_FINISHED",
        "uuid": b64(uuid.uuid4().bytes),
    }
    resubscribe = {
        "type": "SUBSCRIBE",
        **ids,
        "subscribe": {
            "unacknowledged_tasks": [task],
            "unacknowledged_updates": [
                {"status": update["update"]["status"]},
                {"status": finished},
            ],
        },
    }
    second = RawStream(cluster.agent_endpoint, resubscribe, path)
    try:
        assert second.next_event()["type"] == "SUBSCRIBED"
        with pytest.raises(EOFError):  # the old connection is closed
            while True:
                first.next_event()
        # The RUNNING update was already known: no duplicate, no second LAUNCH.
        driver.acknowledgeStatusUpdate(running)
        acked = second.wait_event("ACKNOWLEDGED")["acknowledged"]
        assert acked == {"task_id": {"value": "x1"}, "uuid": running["uuid"]}
        done = sched.wait_status("x1", "TASK_FINISHED")
        assert done["uuid"] == finished["uuid"]
        assert len({s["uuid"] for s in sched.statuses("x1", "TASK_RUNNING")}) == 1
    finally:
        first.close()
        second.close()


def test_a_launch_the_executor_never_got_is_dropped_when_it_resubscribes(
    cluster: EmbeddedCluster, start_framework: DriverFactory
) -> None:
    # Mesos' agent, when an executor re-registers: a task still STAGING that the
    # executor does not report (its LAUNCH was lost in transit) ends TASK_DROPPED for a
    # PARTITION_AWARE framework, rather than waiting forever on an executor that
    # never heard of it; a task it reports is not launched again.
    aware = [{"type": "PARTITION_AWARE"}]
    driver, sched = start_framework(implicit_acks=False, capabilities=aware)
    framework_id = sched.wait("registered")["value"]
    offer = sched.new_offer()
    lost = make_task(offer, "lost", command={"value": "sleep 30"}, executor_id="exec-r")
    kept = make_task(offer, "kept", command={"value": "sleep 30"}, executor_id="exec-r")
    driver.launchTasks(offer["id"], [lost, kept])
    ids = {"framework_id": {"value": framework_id}, "executor_id": {"value": "exec-r"}}
    path = "/api/v1/executor"
    first = RawStream(cluster.agent_endpoint, {"type": "SUBSCRIBE", **ids, "subscribe": {}}, path)
    launched: set[str] = set()
    first.next_event()  # SUBSCRIBED
    while len(launched) < 2:
        launched.add(first.wait_event("LAUNCH")["launch"]["task"]["task_id"]["value"])
    resubscribe = {"type": "SUBSCRIBE", **ids, "subscribe": {"unacknowledged_tasks": [kept]}}
    second = RawStream(cluster.agent_endpoint, resubscribe, path)
    try:
        assert second.next_event()["type"] == "SUBSCRIBED"
        dropped = sched.wait_status("lost", "TASK_DROPPED")
        assert dropped["reason"] == "REASON_SLAVE_RESTARTED"
        assert dropped["source"] == "SOURCE_AGENT"
        time.sleep(0.5)  # a negative check: nothing happens to the reported task
        assert not sched.statuses("kept")
    finally:
        first.close()
        second.close()

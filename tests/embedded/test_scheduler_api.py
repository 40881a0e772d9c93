"""Conformance of the embedded cluster, driven by unmodified pymesos and raw HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ancho.embedded import EmbeddedCluster

from .conftest import (
    DriverFactory,
    Recorder,
    make_task,
    pid_alive,
    running_report,
    unb64,
    wait_until,
)


def _offer_resources(offer: Any) -> dict[str, Any]:
    return {r["name"]: r for r in offer["resources"]}


def _assert_no_new_offer(sched: Recorder, after: int, why: str) -> None:
    """Fail with ``why`` if an offer beyond the first ``after`` arrives within 1 s."""
    try:
        offer = sched.new_offer(after=after, timeout=1.0)
    except AssertionError as exc:
        assert "timed out" in str(exc)
        return
    raise AssertionError(f"{why}: {offer}")


def test_version(cluster: EmbeddedCluster) -> None:
    with urllib.request.urlopen(f"http://{cluster.address}/version", timeout=5) as response:
        assert json.loads(response.read())["version"] == "1.11.0"


def test_a_client_hanging_up_mid_request_is_no_traceback_and_serving_goes_on(
    cluster: EmbeddedCluster, capfd: pytest.CaptureFixture[str]
) -> None:
    host, port = cluster.address.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        # Half a body, then a reset (SO_LINGER 0): the master's read fails mid-request.
        head = b"POST /api/v1/scheduler HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
        sock.sendall(head + b'{"ty')
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    time.sleep(0.5)
    with urllib.request.urlopen(f"http://{cluster.address}/version", timeout=5) as response:
        assert response.status == 200
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err + captured.out


def test_round_trip(cluster: EmbeddedCluster, start_framework: DriverFactory) -> None:
    driver, sched = start_framework()
    framework_id = sched.wait("registered")["value"]
    offer = sched.new_offer()
    res = _offer_resources(offer)
    assert res["cpus"]["scalar"]["value"] == 4
    assert res["mem"]["scalar"]["value"] == 4096
    assert res["disk"]["scalar"]["value"] == 10_000
    assert res["ports"]["ranges"]["range"] == [{"begin": 31000, "end": 32000}]
    assert all(r["role"] == "*" for r in offer["resources"])
    assert offer["framework_id"]["value"] == framework_id
    assert offer["agent_id"]["value"] == cluster.agent_id
    assert offer["hostname"] == "127.0.0.1"

    driver.launchTasks(offer["id"], [make_task(offer, "t1", {"result": "héllo"})])
    running = sched.wait_status("t1", "TASK_RUNNING")
    finished = sched.wait_status("t1", "TASK_FINISHED")
    assert unb64(finished["data"]).decode() == "héllo"
    for status in (running, finished):
        assert status["source"] == "SOURCE_EXECUTOR"
        assert status["agent_id"]["value"] == cluster.agent_id
        assert status["executor_id"]["value"] == "exec-1"
        assert len(unb64(status["uuid"])) == 16
        assert isinstance(status["timestamp"], float)
    info = running_report(running)
    env = info["env"]
    sandbox = Path(env["MESOS_DIRECTORY"])
    runs = cluster.work_dir / "slaves" / cluster.agent_id / "frameworks" / framework_id
    assert sandbox.parent == runs / "executors" / "exec-1" / "runs"
    assert env["MESOS_SANDBOX"] == str(sandbox)
    assert env["MESOS_FRAMEWORK_ID"] == framework_id
    assert env["MESOS_EXECUTOR_ID"] == "exec-1"
    assert env["MESOS_SLAVE_ID"] == cluster.agent_id
    assert env["MESOS_AGENT_ENDPOINT"] == cluster.agent_endpoint
    assert env["MESOS_CHECKPOINT"] == "0"
    assert env["MESOS_HTTP_COMMAND_EXECUTOR"] == "0"
    assert env["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"] == "500ms"
    assert "MESOS_LOCAL" not in env
    assert info["pgid"] != os.getpgid(0)  # its own process group
    assert "executor starting" in (sandbox / "stdout").read_text()
    assert "executor stderr" in (sandbox / "stderr").read_text()

    # The executor outlives its task and is reused by the next one.
    offer2 = sched.new_offer(after=1)
    assert offer2["executor_ids"] == [{"value": "exec-1"}]
    driver.launchTasks(offer2["id"], [make_task(offer2, "t2", {"result": "again"})])
    running2 = sched.wait_status("t2", "TASK_RUNNING")
    assert running_report(running2)["pid"] == info["pid"]
    sched.wait_status("t2", "TASK_FINISHED")


def test_invalid_tasks_get_task_error(
    cluster: EmbeddedCluster, start_framework: DriverFactory
) -> None:
    driver, sched = start_framework()
    offer = sched.new_offer()
    no_resources = make_task(offer, "no-res")
    no_resources["resources"] = []
    too_big = make_task(offer, "too-big", cpus=64)
    command_task = make_task(offer, "command")
    del command_task["executor"]
    command_task["command"] = {"value": "true"}
    bad_id = make_task(offer, "bad/id")
    ok = make_task(offer, "dup", {"mode": "run"})
    dup = make_task(offer, "dup", {"mode": "run"})
    other_exec = make_task(offer, "other", executor_id="exec-1")
    other_exec["executor"]["command"] = {"value": "sleep 1"}  # differs from exec-1's
    driver.launchTasks(
        offer["id"], [no_resources, too_big, command_task, bad_id, ok, dup, other_exec]
    )
    for task_id in ("no-res", "too-big", "command", "bad/id", "other"):
        status = sched.wait_status(task_id, "TASK_ERROR")
        assert status["reason"] == "REASON_TASK_INVALID"
        assert status["source"] == "SOURCE_MASTER"
        assert "uuid" not in status
        assert status["message"]
    assert "duplicate" in sched.wait_status("dup", "TASK_ERROR")["message"].lower()
    sched.wait_status("dup", "TASK_RUNNING")  # the first of the two still runs


def test_stale_offer_gives_task_lost(
    cluster: EmbeddedCluster, start_framework: DriverFactory
) -> None:
    driver, sched = start_framework()
    offer = sched.new_offer()
    driver.declineOffer(offer["id"], {"refuse_seconds": 0.1})
    driver.launchTasks(offer["id"], [make_task(offer, "late")])
    status = sched.wait_status("late", "TASK_LOST")
    assert status["reason"] == "REASON_INVALID_OFFERS"
    assert status["source"] == "SOURCE_MASTER"
    assert "uuid" not in status
    # Nothing was consumed: the next offer is the whole agent again.
    offer2 = sched.new_offer(after=1)
    assert _offer_resources(offer2)["cpus"]["scalar"]["value"] == 4


def test_remaining_resources_are_reoffered(
    cluster: EmbeddedCluster, start_framework: DriverFactory
) -> None:
    driver, sched = start_framework()
    offer = sched.new_offer()
    driver.launchTasks(offer["id"], [make_task(offer, "a", {"mode": "run"}, cpus=1)])
    offer2 = sched.new_offer(after=1, timeout=3)
    # 4 - 1 (task) - 0.1 (executor)
    assert _offer_resources(offer2)["cpus"]["scalar"]["value"] == 2.9
    assert _offer_resources(offer2)["mem"]["scalar"]["value"] == 4096 - 64


def test_decline_filter_revive_suppress(
    cluster: EmbeddedCluster, start_framework: DriverFactory
) -> None:
    driver, sched = start_framework()
    offer = sched.new_offer()
    driver.declineOffer(offer["id"], {"refuse_seconds": 60})
    _assert_no_new_offer(sched, 1, "declined resources were re-offered within refuse_seconds")
    driver.reviveOffers()
    offer2 = sched.new_offer(after=1, timeout=3)
    driver.declineOffer(offer2["id"], {"refuse_seconds": 0.3})
    sched.new_offer(after=2, timeout=3)  # the short filter expires
    driver.suppressOffers()
    count = len(sched.all("offer"))
    # An outstanding offer stays; declining it while suppressed brings no new ones.
    driver.declineOffer(sched.all("offer")[-1]["id"], {"refuse_seconds": 0})
    wait_until(lambda: True)
    _assert_no_new_offer(sched, count, "offers sent while suppressed")
    driver.reviveOffers()
    sched.new_offer(after=count, timeout=3)


def test_reconciliation(cluster: EmbeddedCluster, start_framework: DriverFactory) -> None:
    driver, sched = start_framework()
    offer = sched.new_offer()
    driver.launchTasks(
        offer["id"],
        [make_task(offer, "r1", {"mode": "run"}), make_task(offer, "r2", {"mode": "run"})],
    )
    sched.wait_status("r1", "TASK_RUNNING")
    sched.wait_status("r2", "TASK_RUNNING")

    driver.reconcileTasks([])
    for task_id in ("r1", "r2"):
        status = wait_until(lambda t=task_id: sched.reconciled(t), what=task_id)[0]
        assert status["state"] == "TASK_RUNNING"
        assert status["source"] == "SOURCE_MASTER"
        assert status["executor_id"]["value"] == "exec-1"
        assert "uuid" not in status
    driver.reconcileTasks([{"task_id": {"value": "r1"}}, {"task_id": {"value": "nope"}}])
    wait_until(lambda: len(sched.reconciled("r1")) == 2)
    unknown = sched.wait_status("nope", "TASK_LOST")
    assert unknown["reason"] == "REASON_RECONCILIATION"
    assert len(sched.reconciled("r2")) == 1  # explicit reconciliation only answers for r1


def test_kill(cluster: EmbeddedCluster, start_framework: DriverFactory) -> None:
    driver, sched = start_framework()
    offer = sched.new_offer()
    driver.launchTasks(offer["id"], [make_task(offer, "k1", {"mode": "run"})])
    sched.wait_status("k1", "TASK_RUNNING")
    driver.killTask({"value": "k1"})
    killed = sched.wait_status("k1", "TASK_KILLED")
    assert killed["source"] == "SOURCE_EXECUTOR"
    driver.killTask({"value": "never-launched"})
    assert sched.wait_status("never-launched", "TASK_LOST")["reason"] == "REASON_RECONCILIATION"


def test_messages_both_ways_and_large_records(
    cluster: EmbeddedCluster, start_framework: DriverFactory
) -> None:
    driver, sched = start_framework()
    offer = sched.new_offer()
    driver.launchTasks(offer["id"], [make_task(offer, "m1", {"mode": "run"})])
    sched.wait_status("m1", "TASK_RUNNING")
    small = "aGVsbG8="
    # ~300 KB: the event is split over several HTTP chunks on both streams.
    large = "QUJD" * 75_000
    for data in (small, large):
        driver.sendFrameworkMessage({"value": "exec-1"}, {"value": cluster.agent_id}, data)
        executor_id, agent_id, _echoed = sched.wait("message", lambda m, d=data: m[2] == d)
        assert executor_id == {"value": "exec-1"}
        assert agent_id == {"value": cluster.agent_id}


def test_executor_death(cluster: EmbeddedCluster, start_framework: DriverFactory) -> None:
    driver, sched = start_framework()
    offer = sched.new_offer()
    driver.launchTasks(offer["id"], [make_task(offer, "d1", {"mode": "run"}, cpus=2)])
    running = sched.wait_status("d1", "TASK_RUNNING")
    pgid = running_report(running)["pgid"]
    os.killpg(pgid, signal.SIGKILL)
    failed = sched.wait_status("d1", "TASK_FAILED")
    assert failed["reason"] == "REASON_EXECUTOR_TERMINATED"
    assert failed["source"] == "SOURCE_AGENT"
    assert failed["executor_id"]["value"] == "exec-1"
    assert len(unb64(failed["uuid"])) == 16
    executor_id, agent_id, status = sched.wait("executor_lost")
    assert executor_id == {"value": "exec-1"}
    assert agent_id == {"value": cluster.agent_id}
    assert status == signal.SIGKILL  # raw wait status: killed by signal 9
    # Its resources are free again: once outstanding offers are declined, the whole
    # agent is offered.
    seen = len(sched.all("offer"))
    driver.declineOffer([o["id"] for o in sched.all("offer")[1:]], {"refuse_seconds": 0})
    wait_until(
        lambda: any(
            _offer_resources(o)["cpus"]["scalar"]["value"] == 4 for o in sched.all("offer")[seen:]
        ),
        what="an offer of the whole agent",
    )
    # Executor ids are not reserved after death: a new executor may reuse the id.
    assert not pid_alive(pgid)

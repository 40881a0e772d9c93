"""The agent as Mesos 1.11's: executor environment, registration timeout, heartbeats,
and the executor API's validation of status updates."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ancho.embedded import EmbeddedCluster

from .conftest import (
    EXECUTOR_COMMAND,
    DriverFactory,
    RawStream,
    b64,
    make_task,
    pid_alive,
    post,
    running_report,
    wait_until,
)

EXECUTOR_API = "/api/v1/executor"
MESOS_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: What /bin/sh and Python's C-locale coercion (PEP 538) add to an environment themselves.
SHELL_ADDED = {"PWD", "OLDPWD", "SHLVL", "_", "LC_CTYPE"}


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EmbeddedCluster]:
    """The conftest's cluster, with agent settings from indirect parametrization."""
    settings: dict[str, Any] = {
        "cpus": 4,
        "mem_mb": 4096,
        "disk_mb": 10_000,
        "heartbeat_interval_s": 0.5,
        "status_update_retry_s": 0.4,
        "default_refuse_s": 5.0,
        "executor_shutdown_grace_s": 0.5,
        **getattr(request, "param", {}),
    }
    embedded = EmbeddedCluster(tmp_path / "mesos", **settings)
    embedded.start()
    yield embedded
    embedded.stop()


def _sandbox_runs(cluster: EmbeddedCluster, framework_id: str, executor_id: str) -> Path:
    return (
        cluster.work_dir / "slaves" / cluster.agent_id / "frameworks" / framework_id
        / "executors" / executor_id / "runs"
    )  # fmt: skip


def _subscribe_raw(cluster: EmbeddedCluster, framework_id: str, executor_id: str) -> RawStream:
    """Play the executor of a task whose real process never subscribes."""
    ids = {"framework_id": {"value": framework_id}, "executor_id": {"value": executor_id}}
    stream = RawStream(
        cluster.agent_endpoint, {"type": "SUBSCRIBE", **ids, "subscribe": {}}, EXECUTOR_API
    )
    assert stream.next_event()["type"] == "SUBSCRIBED"
    return stream


def test_executor_environment_is_the_agents_variables_and_the_commands(
    cluster: EmbeddedCluster, start_framework: DriverFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever the agent's own process has, its executors never see it.
    monkeypatch.setenv("ANCHO_AGENT_ONLY", "not for executors")
    monkeypatch.setenv("HOME", "/nonexistent-agent-home")
    driver, sched = start_framework()
    framework_id = sched.wait("registered")["value"]
    offer = sched.new_offer()
    variables = [
        {"name": "FROM_COMMAND", "value": "yes"},
        {"name": "LIBPROCESS_PORT", "value": "4242"},  # the CommandInfo's value wins
    ]
    command = {"value": EXECUTOR_COMMAND, "environment": {"variables": variables}}
    driver.launchTasks(offer["id"], [make_task(offer, "env1", command=command)])
    env = running_report(sched.wait_status("env1", "TASK_RUNNING"))["env"]
    sandbox = env["MESOS_DIRECTORY"]
    expected = {
        "LIBPROCESS_IP": "127.0.0.1",
        "LIBPROCESS_PORT": "4242",
        "PATH": MESOS_DEFAULT_PATH,
        "FROM_COMMAND": "yes",
        "MESOS_FRAMEWORK_ID": framework_id,
        "MESOS_EXECUTOR_ID": "exec-1",
        "MESOS_DIRECTORY": sandbox,
        "MESOS_SANDBOX": sandbox,
        "MESOS_SLAVE_ID": cluster.agent_id,
        "MESOS_SLAVE_PID": f"slave(1)@{cluster.agent_endpoint}",
        "MESOS_AGENT_ENDPOINT": cluster.agent_endpoint,
        "MESOS_CHECKPOINT": "0",
        "MESOS_HTTP_COMMAND_EXECUTOR": "0",
        "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": "500ms",
    }
    assert {k: v for k, v in env.items() if k not in SHELL_ADDED} == expected
    assert Path(sandbox).parent == _sandbox_runs(cluster, framework_id, "exec-1")


def test_command_environment_wins_over_the_agents(
    cluster: EmbeddedCluster, start_framework: DriverFactory
) -> None:
    driver, sched = start_framework()
    offer = sched.new_offer()
    variables = [
        {"name": "PATH", "value": "/opt/tools/bin:/usr/bin:/bin"},
        {"name": "MESOS_SANDBOX", "value": "/where/the/framework/says"},
    ]
    command = {"value": EXECUTOR_COMMAND, "environment": {"variables": variables}}
    driver.launchTasks(offer["id"], [make_task(offer, "env2", command=command)])
    env = running_report(sched.wait_status("env2", "TASK_RUNNING"))["env"]
    assert env["PATH"] == "/opt/tools/bin:/usr/bin:/bin"
    assert env["MESOS_SANDBOX"] == "/where/the/framework/says"
    assert env["MESOS_DIRECTORY"] != env["MESOS_SANDBOX"]


@pytest.mark.parametrize("cluster", [{"executor_registration_timeout_s": 3.0}], indirect=True)
def test_executor_that_never_subscribes_is_killed_after_the_registration_timeout(
    cluster: EmbeddedCluster, start_framework: DriverFactory
) -> None:
    driver, sched = start_framework()
    framework_id = sched.wait("registered")["value"]
    offer = sched.new_offer()
    mute = {"command": {"value": "echo $$ > pid; exec sleep 60"}}
    started = time.monotonic()
    driver.launchTasks(
        offer["id"],
        [
            make_task(offer, "mute", {"mode": "run"}, executor_id="mute", **mute),
            make_task(offer, "live", {"mode": "run"}, executor_id="live"),
        ],
    )
    sched.wait_status("live", "TASK_RUNNING")
    pid_file = _sandbox_runs(cluster, framework_id, "mute") / "latest" / "pid"
    pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), what="pid"))
    failed = sched.wait_status("mute", "TASK_FAILED")
    assert time.monotonic() - started >= 3.0
    assert failed["reason"] == "REASON_EXECUTOR_REGISTRATION_TIMEOUT"
    assert failed["message"] == "Executor did not register within 3secs"
    assert failed["source"] == "SOURCE_AGENT"
    assert failed["executor_id"] == {"value": "mute"}
    lost = sched.wait("executor_lost", lambda e: e[0]["value"] == "mute")
    assert lost[2] == 9  # destroyed: SIGKILL, as the raw wait status
    wait_until(lambda: not pid_alive(pid), what="the mute executor's exit")
    # An executor that subscribed in time keeps running past the timeout.
    time.sleep(0.5)
    assert not sched.statuses("live", "TASK_FAILED")
    assert not sched.all("executor_lost", lambda e: e[0]["value"] == "live")


@pytest.mark.parametrize(
    "cluster",
    [{"heartbeat_interval_s": 60.0, "executor_heartbeat_interval_s": 0.3}],
    indirect=True,
)
def test_agent_sends_executor_heartbeats_at_its_own_interval(
    cluster: EmbeddedCluster, start_framework: DriverFactory
) -> None:
    driver, sched = start_framework()
    framework_id = sched.wait("registered")["value"]
    offer = sched.new_offer()
    driver.launchTasks(offer["id"], [make_task(offer, "hb", command={"value": "sleep 30"})])
    stream = _subscribe_raw(cluster, framework_id, "exec-1")
    try:
        started = time.monotonic()
        for _ in range(3):
            stream.wait_event("HEARTBEAT")
        elapsed = time.monotonic() - started
        assert 0.6 <= elapsed < 5.0
    finally:
        stream.close()


def test_executor_heartbeats_default_to_thirty_minutes(
    cluster: EmbeddedCluster, start_framework: DriverFactory
) -> None:
    driver, sched = start_framework()
    framework_id = sched.wait("registered")["value"]
    offer = sched.new_offer()
    driver.launchTasks(offer["id"], [make_task(offer, "hb", command={"value": "sleep 30"})])
    with urllib.request.urlopen(f"http://{cluster.agent_endpoint}/slave(1)/state") as response:
        flags = json.load(response)["flags"]
    assert flags["executor_registration_timeout"] == "1mins"
    stream = _subscribe_raw(cluster, framework_id, "exec-1")
    try:
        assert stream.next_event()["type"] == "LAUNCH"
        # The scheduler gets heartbeats every 0.5 s here; an executor gets none for 30 min.
        stream.sock.settimeout(2.0)
        with pytest.raises(TimeoutError):
            kind = stream.next_event()["type"]
            pytest.fail(f"unexpected {kind} event")
    finally:
        stream.close()


def test_heartbeat_call_is_accepted(
    cluster: EmbeddedCluster, start_framework: DriverFactory
) -> None:
    driver, sched = start_framework()
    framework_id = sched.wait("registered")["value"]
    offer = sched.new_offer()
    driver.launchTasks(offer["id"], [make_task(offer, "hb", command={"value": "sleep 30"})])
    ids = {"framework_id": {"value": framework_id}, "executor_id": {"value": "exec-1"}}
    heartbeat = {"type": "HEARTBEAT", **ids}
    # Mesos answers before looking the executor up: subscribed or not, known or not.
    assert post(cluster.agent_endpoint, heartbeat, path=EXECUTOR_API)[0] == 202
    unknown = dict(heartbeat, executor_id={"value": "nobody"})
    assert post(cluster.agent_endpoint, unknown, path=EXECUTOR_API)[0] == 202
    stream = _subscribe_raw(cluster, framework_id, "exec-1")
    try:
        assert post(cluster.agent_endpoint, heartbeat, path=EXECUTOR_API) == (202, b"")
    finally:
        stream.close()


def test_update_must_come_from_the_executor(
    cluster: EmbeddedCluster, start_framework: DriverFactory
) -> None:
    driver, sched = start_framework()
    framework_id = sched.wait("registered")["value"]
    offer = sched.new_offer()
    driver.launchTasks(offer["id"], [make_task(offer, "src", command={"value": "sleep 30"})])
    ids = {"framework_id": {"value": framework_id}, "executor_id": {"value": "exec-1"}}
    stream = _subscribe_raw(cluster, framework_id, "exec-1")

    def update(**status: Any) -> tuple[int, str]:
        body = {
            "task_id": {"value": "src"},
            "state": "TASK_RUNNING",
            "uuid": b64(uuid.uuid4().bytes),
            **status,
        }
        call = {"type": "UPDATE", **ids, "update": {"status": body}}
        code, text = post(cluster.agent_endpoint, call, path=EXECUTOR_API)
        return code, text.decode()

    prefix = "Failed to validate Executor::Call: "
    who = f"executor exec-1 of framework {framework_id}"
    try:
        stream.wait_event("LAUNCH")
        assert update() == (
            400,
            f"{prefix}Received Call from {who} with invalid source, expecting 'SOURCE_EXECUTOR'\n",
        )
        assert update(source="SOURCE_AGENT")[0] == 400
        assert update(source="SOURCE_EXECUTOR", state="TASK_STAGING") == (
            400,
            f"{prefix}Received TASK_STAGING from {who} which is not allowed\n",
        )
        assert update(source="SOURCE_EXECUTOR", uuid=b64(b"short")) == (
            400,
            f"{prefix}Not a valid UUID\n",
        )
        mismatch = update(source="SOURCE_EXECUTOR", executor_id={"value": "other"})
        assert mismatch == (
            400,
            f"{prefix}ExecutorID in Call: exec-1 does not match ExecutorID in TaskStatus: other\n",
        )
        assert update(source="SOURCE_EXECUTOR")[0] == 202
        sched.wait_status("src", "TASK_RUNNING")
        time.sleep(0.5)
        assert len(sched.statuses("src", "TASK_RUNNING")) == 1
    finally:
        stream.close()


def test_mesos_durations_in_the_environment(
    cluster: EmbeddedCluster, start_framework: DriverFactory
) -> None:
    driver, sched = start_framework(checkpoint=True)
    offer = sched.new_offer()
    grace = {"shutdown_grace_period": {"nanoseconds": 60 * 10**9}}
    driver.launchTasks(offer["id"], [make_task(offer, "dur", **grace)])
    env = running_report(sched.wait_status("dur", "TASK_RUNNING"))["env"]
    assert env["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"] == "1mins"  # Mesos' Duration format
    assert env["MESOS_CHECKPOINT"] == "1"
    assert env["MESOS_RECOVERY_TIMEOUT"] == "15mins"
    assert env["MESOS_SUBSCRIPTION_BACKOFF_MAX"] == "2secs"

"""The Docker containerizer as Mesos 1.11's: driven through the embedded cluster with
unmodified pymesos, the started containers inspected with the docker SDK.

Real dockerd and Ancho's executor image (the ``executor_image`` fixture builds it).
Every container these tests start is labelled with its own executor id and removed by
the agent; none of them is touched by name.
"""

from __future__ import annotations

import json
import socket
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ancho.embedded import EmbeddedCluster
from ancho.embedded.containerizer import ProcessContainerizer
from ancho.embedded.docker_containerizer import DockerContainerizer
from scheduler.framework import SANDBOX_PARAMETERS

from .conftest import DriverFactory, make_task, resources, wait_until

pytestmark = pytest.mark.slow

SANDBOX = "/mnt/mesos/sandbox"
IMAGE = "ancho/executor:latest"


@pytest.fixture
def docker_client(executor_image: str) -> Any:
    docker = pytest.importorskip("docker")
    return docker.from_env()


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path, docker_client: Any
            ) -> Iterator[EmbeddedCluster]:  # fmt: skip
    """An embedded cluster whose agent has the Docker containerizer (``cfs_quota`` by
    indirect parametrization)."""
    cfs = bool(getattr(request, "param", False))
    embedded = EmbeddedCluster(
        tmp_path / "mesos",
        cpus=4,
        mem_mb=4096,
        disk_mb=10_000,
        heartbeat_interval_s=0.5,
        status_update_retry_s=0.4,
        executor_shutdown_grace_s=0.5,
        containerizers=(ProcessContainerizer(), DockerContainerizer(cfs, pull_timeout_s=4.0)),
    )
    embedded.start()
    yield embedded
    embedded.stop()


def _launch(driver: Any, sched: Any, *, command: str = "sleep 120", cpus: float = 0.4,
            user: str | None = None, **docker: Any) -> str:  # fmt: skip
    """Launch one task whose executor is a Docker container; return the executor id."""
    offer = sched.new_offer()
    executor_id = f"dc-{uuid.uuid4().hex[:10]}"
    container = {"type": "DOCKER", "docker": {"image": IMAGE, "network": "HOST", **docker}}
    task = make_task(offer, executor_id, executor_id=executor_id, cpus=cpus,
                     command={"value": command, "shell": True, **({"user": user} if user else {})},
                     container=container)  # fmt: skip
    driver.launchTasks(offer["id"], [task])
    return executor_id


def _container(client: Any, executor_id: str) -> Any:
    """The running container of ``executor_id``, inspected."""
    found = wait_until(
        lambda: client.containers.list(filters={"label": f"ancho.mesos.executor={executor_id}"}),
        timeout=60,
        what=f"the container of {executor_id}",
    )
    return found[0]


def _sandbox(container: Any) -> Path:
    (mount,) = [m for m in container.attrs["Mounts"] if m["Destination"] == SANDBOX]
    return Path(mount["Source"])


def _failed(sched: Any, executor_id: str) -> Any:
    terminal = ("TASK_FAILED", "TASK_LOST", "TASK_DROPPED", "TASK_ERROR")
    return sched.wait("status", lambda s: s["task_id"]["value"] == executor_id
                      and s["state"] in terminal, timeout=60)  # fmt: skip


def _no_container(client: Any, executor_id: str) -> bool:
    filters = {"label": f"ancho.mesos.executor={executor_id}"}
    return not client.containers.list(all=True, filters=filters)


def test_no_user_shares_and_a_memory_limit(
    start_framework: DriverFactory, docker_client: Any
) -> None:
    driver, sched = start_framework()
    executor_id = _launch(driver, sched, cpus=0.4)  # + the executor's 0.1 cpus and 32 MB
    attrs = _container(docker_client, executor_id).attrs
    assert attrs["Config"]["User"] == ""  # the image's user: Mesos passes no --user
    assert attrs["Config"]["WorkingDir"] != SANDBOX  # nor a working directory
    host = attrs["HostConfig"]
    assert host["CpuShares"] == 512  # 0.5 cpus * 1024
    assert host["CpuQuota"] == 0 and host["NanoCpus"] == 0  # no CFS quota by default
    assert host["Memory"] == 64 * 2**20
    assert host["MemorySwap"] != host["Memory"]  # --memory only, as Mesos
    env = dict(e.split("=", 1) for e in attrs["Config"]["Env"])
    assert env["MESOS_SANDBOX"] == SANDBOX
    assert env["MESOS_CONTAINER_NAME"] == attrs["Name"].lstrip("/")


def test_minimum_shares_and_memory(start_framework: DriverFactory, docker_client: Any) -> None:
    driver, sched = start_framework()
    offer = sched.new_offer()
    task = make_task(offer, "tiny", executor_id="tiny-" + uuid.uuid4().hex[:8], cpus=0.0005,
                     command={"value": "sleep 120"},
                     container={"type": "DOCKER", "docker": {"image": IMAGE}})  # fmt: skip
    task["executor"]["resources"] = resources(0.001, 4)
    task["resources"] = resources(0.0005, 4)
    driver.launchTasks(offer["id"], [task])
    host = _container(docker_client, task["executor"]["executor_id"]["value"]).attrs["HostConfig"]
    assert host["CpuShares"] == 2  # MIN_CPU_SHARES
    assert host["Memory"] == 32 * 2**20  # MIN_MEMORY


@pytest.mark.parametrize("cluster", [True], indirect=True)
def test_cfs_quota_when_the_agent_enables_it(
    start_framework: DriverFactory, docker_client: Any
) -> None:
    driver, sched = start_framework()
    executor_id = _launch(driver, sched, cpus=0.4)
    host = _container(docker_client, executor_id).attrs["HostConfig"]
    assert host["CpuShares"] == 512
    assert host["CpuQuota"] == 50_000  # 0.5 cpus of the 100 ms period


def test_parameters_are_passed_through(start_framework: DriverFactory, docker_client: Any) -> None:
    driver, sched = start_framework()
    parameters = [
        ("label", "ancho.conformance=yes"),
        ("env", "ANCHO_CONFORMANCE=42"),
        ("hostname", "conformance"),
        ("memory-reservation", "16m"),
        ("ulimit", "nofile=512:1024"),
        ("tmpfs", "/scratch:size=1m"),
        ("add-host", "example.test:10.1.2.3"),
        *SANDBOX_PARAMETERS,
    ]
    executor_id = _launch(driver, sched, network="NONE",
                          parameters=[{"key": k, "value": v} for k, v in parameters])  # fmt: skip
    attrs = _container(docker_client, executor_id).attrs
    config, host = attrs["Config"], attrs["HostConfig"]
    assert config["Labels"]["ancho.conformance"] == "yes"
    assert "ANCHO_CONFORMANCE=42" in config["Env"]
    assert config["Hostname"] == "conformance"
    assert host["MemoryReservation"] == 16 * 2**20
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 512, "Hard": 1024}]
    assert host["Tmpfs"] == {"/scratch": "size=1m"}
    assert host["ExtraHosts"] == ["example.test:10.1.2.3"]
    assert host["ReadonlyRootfs"] is True and host["PidsLimit"] == 512
    assert host["CapDrop"] == ["ALL"] and sorted(host["CapAdd"]) == ["SETGID", "SETUID"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["NetworkMode"] == "none"


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("expose", "80", "'--expose=80' cannot be passed"),
        ("no-such-flag", "1", "unknown flag: --no-such-flag"),
        ("read-only", "yes", "invalid argument 'yes' for --read-only"),
    ],
)
def test_a_flag_that_cannot_be_passed_fails_the_launch_naming_it(
    start_framework: DriverFactory, docker_client: Any, key: str, value: str, said: str
) -> None:
    driver, sched = start_framework()
    executor_id = _launch(driver, sched, parameters=[{"key": key, "value": value}])
    failed = _failed(sched, executor_id)
    assert failed["state"] == "TASK_FAILED"
    assert failed["reason"] == "REASON_CONTAINER_LAUNCH_FAILED"
    assert said in failed["message"]
    assert _no_container(docker_client, executor_id)


@pytest.mark.parametrize(("user", "uid"), [(None, 0), ("nobody", 65534)])
def test_the_sandbox_belongs_to_the_framework_user(
    start_framework: DriverFactory, docker_client: Any, user: str | None, uid: int
) -> None:
    import pwd

    driver, sched = start_framework(**({"user": user} if user else {}))
    executor_id = _launch(driver, sched)
    container = _container(docker_client, executor_id)
    sandbox = _sandbox(container).stat()
    owner = pwd.getpwuid(uid)
    assert (sandbox.st_uid, sandbox.st_gid) == (owner.pw_uid, owner.pw_gid)
    assert stat.S_IMODE(sandbox.st_mode) == 0o750


def test_command_user_wins_over_the_framework_user(
    start_framework: DriverFactory, docker_client: Any
) -> None:
    driver, sched = start_framework()
    executor_id = _launch(driver, sched, user="nobody")
    sandbox = _sandbox(_container(docker_client, executor_id)).stat()
    assert sandbox.st_uid == 65534


def test_a_user_this_agent_does_not_know_fails_the_launch(
    start_framework: DriverFactory, docker_client: Any
) -> None:
    driver, sched = start_framework(user="ancho-no-such-user")
    executor_id = _launch(driver, sched)
    failed = _failed(sched, executor_id)
    assert "Failed to chown directory to 'ancho-no-such-user'" in failed["message"]
    assert "No such user 'ancho-no-such-user'" in failed["message"]
    assert _no_container(docker_client, executor_id)


def test_an_image_that_cannot_be_pulled_fails_with_the_pull_error(
    start_framework: DriverFactory, docker_client: Any
) -> None:
    driver, sched = start_framework()
    executor_id = _launch(driver, sched, image="ancho/no-such-image")
    failed = _failed(sched, executor_id)
    assert failed["state"] == "TASK_FAILED"
    assert failed["reason"] == "REASON_CONTAINER_LAUNCH_FAILED"
    message = failed["message"]
    assert "Failed to run 'docker pull ancho/no-such-image:latest': " in message
    assert len(message.split("docker pull ancho/no-such-image:latest': ", 1)[1]) > 5  # why
    assert _no_container(docker_client, executor_id)


@pytest.fixture
def silent_registry() -> Iterator[int]:
    """A loopback port that accepts connections and never answers (an insecure registry
    to Docker, which trusts 127.0.0.0/8 over plain HTTP)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for conn in held:
        conn.close()


def test_a_pull_that_hangs_is_bounded(
    start_framework: DriverFactory, docker_client: Any, silent_registry: int
) -> None:
    driver, sched = start_framework()
    image = f"127.0.0.1:{silent_registry}/ancho/hangs:1"
    started = time.monotonic()
    executor_id = _launch(driver, sched, image=image)
    failed = _failed(sched, executor_id)
    assert time.monotonic() - started < 30
    assert failed["reason"] == "REASON_CONTAINER_LAUNCH_FAILED"
    assert f"docker pull {image}" in failed["message"] and "timed out" in failed["message"]


_WHO = (
    "python -c 'import json, os, sys; from pathlib import Path;"
    " from ancho.sandbox.identity import become_sandbox_owner as b;"
    ' s = Path(os.environ["MESOS_SANDBOX"]); b(s); (s / "tmp").mkdir(exist_ok=True);'
    ' caps = [l for l in Path("/proc/self/status").read_text().splitlines()'
    ' if l.startswith("Cap")];'
    ' (s / "tmp" / "who.json").write_text(json.dumps({"uid": os.getuid(),'
    ' "gid": os.getgid(), "groups": os.getgroups(), "caps": caps}))\''
)


@pytest.mark.parametrize(("user", "uid", "gid"), [(None, 1000, 0), ("nobody", 65534, 65534)])
def test_ancho_executor_gives_up_root_for_the_sandbox(
    start_framework: DriverFactory,
    docker_client: Any,
    tmp_path: Path,
    user: str | None,
    uid: int,
    gid: int,
) -> None:
    """Under the rules above, with the framework's hardening, Ancho's image becomes the
    sandbox's owner (or its own user in root's group) and keeps no capability."""
    driver, sched = start_framework(**({"user": user} if user else {}))
    parameters = [{"key": k, "value": v} for k, v in SANDBOX_PARAMETERS]
    _launch(driver, sched, command=_WHO, parameters=parameters)
    found = wait_until(lambda: list((tmp_path / "mesos").rglob("who.json")), timeout=60,
                       what="who.json")  # fmt: skip
    who = json.loads(found[0].read_text())
    assert (who["uid"], who["gid"], who["groups"]) == (uid, gid, [])
    caps = dict(line.split(":\t") for line in who["caps"])
    assert int(caps["CapEff"], 16) == 0 and int(caps["CapPrm"], 16) == 0
    work = found[0].parent
    assert work.stat().st_uid == (0 if user is None else uid)


def test_a_container_that_will_not_start_is_removed(
    start_framework: DriverFactory, docker_client: Any
) -> None:
    driver, sched = start_framework()
    # Docker creates this container, then refuses to start it (below 0.01 cpus).
    executor_id = _launch(driver, sched, parameters=[{"key": "cpus", "value": "0.001"}])
    failed = _failed(sched, executor_id)
    assert failed["reason"] == "REASON_CONTAINER_LAUNCH_FAILED"
    assert _no_container(docker_client, executor_id)

"""No long-lived secret reaches an executor: each run gets a Cassandra role of its own,
handed to its executors over Mesos framework messages and dropped when the run ends.

Real pieces: Cassandra 5.0, the embedded Mesos cluster and its state endpoints, pymesos,
``ancho server``, executor processes, Spark. What is checked during and after a run:
no password (the admin's, the run owner's, the run's own) in ``/master/state``, the
agent's ``/state`` or any process's command line; the run's role works while the run
lasts, only on what a run needs, and cannot log in afterwards; results are unchanged.
"""

from __future__ import annotations

import getpass
import http.client
import itertools
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e import MODELS, LiveServer, ancho
from pymesos import MesosSchedulerDriver, Scheduler, decode_data, encode_data

from ancho import messages
from ancho.client import pack
from ancho.embedded import EmbeddedCluster
from ancho.errors import StoreError
from ancho.messages import BatchReport
from ancho.model import LoadedModel, OutputNames, run_sequences
from ancho.runner import executor_command, executor_environment, new_run
from ancho.server.stores import RoutingStore
from ancho.spec import spec_from_data
from ancho.store import open_store
from ancho.store.cassandra import CassandraStore, CassandraURL
from scheduler.credentials import ROLE_PREFIX, RunCredentials, role_name
from scheduler.events import (
    CredentialAsked,
    Launch,
    Offer,
    Offers,
    RefuseCredential,
    RevokeCredential,
    RunInfo,
    SendCredential,
    StoreChecked,
    Submit,
    SummaryDone,
    TaskStatus,
)
from scheduler.framework import ExecutorLaunch
from scheduler.service import SchedulerService
from scheduler.state import SchedulerConfig, SchedulerState
from scheduler.summary_job import SummaryJob

SLOW = {"source": str(MODELS / "slow"), "entrypoint": "model:simulate"}


# --- the pure parts ---------------------------------------------------------------------
def test_messages_round_trip_and_nothing_else_decodes() -> None:
    for message in (messages.Stop(), messages.CredentialRequest("r1"),
                    messages.Credential("r1", "cassandra://u:p@h:9042/ks"),
                    messages.CredentialRefused("r1", "why")):  # fmt: skip
        assert messages.decode(message.encode()) == message
    assert "u:p" not in repr(messages.Credential("r1", "cassandra://u:p@h:9042/ks"))
    for raw in (b"stop", b"\xff", b"[]", b'{"op": "exec"}', b'{"op": "credential"}',
                b'{"op": "credential_request", "run_id": 1}',
                b'{"op": "stop", "extra": "x"}'):  # fmt: skip
        with pytest.raises(ValueError):
            messages.decode(raw)


def test_only_the_runs_own_executors_get_its_credential_and_it_ends_with_the_run() -> None:
    state = SchedulerState(SchedulerConfig(fixed_batch=10))
    state.handle(Submit(RunInfo("r1", 10), 0.0))
    out = state.handle(Offers((Offer("o1", "a1", "h", 4.0, 4096.0),), 1.0))
    [launch] = [c for c in out if isinstance(c, Launch)]
    executor = launch.tasks[0].executor_id
    asked = state.handle(CredentialAsked("r1", executor, "a1", 2.0))
    assert asked == [SendCredential("r1", executor, "a1")]
    for who, agent in (("r1.e99", "a1"), (executor, "another-agent")):
        refused = state.handle(CredentialAsked("r1", who, agent, 2.0))
        assert isinstance(refused[0], RefuseCredential) and "not launched" in refused[0].reason
    other = state.handle(CredentialAsked("r2", executor, "a1", 2.0))
    assert isinstance(other[0], RefuseCredential) and "not being scheduled" in other[0].reason
    done = state.handle(TaskStatus("r1.t0", "TASK_FINISHED", 3.0, report=BatchReport(10, 10)))
    assert not [c for c in done if isinstance(c, RevokeCredential)]  # the summary needs it
    state.handle(StoreChecked("r1", 10, (), 3.5))  # the completion check: all stored
    ended = state.handle(SummaryDone("r1", 10, 0, 4.0))
    assert [c for c in ended if isinstance(c, RevokeCredential)] == [RevokeCredential("r1")]
    after = state.handle(CredentialAsked("r1", executor, "a1", 5.0))
    assert isinstance(after[0], RefuseCredential)


# --- what anyone on the machine can see ---------------------------------------------------
def _get(address: str, path: str) -> str:
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 200, path
        return response.read().decode()
    finally:
        conn.close()


def _state_endpoints(master: str) -> str:
    return "\n".join(_get(master, p) for p in ("/master/state", "/state", "/slave(1)/state"))


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _command_lines(only: set[int] | None = None) -> str:
    """``ps -eo args`` and every /proc/*/cmdline (of the ``only`` processes, if given)."""
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True)
    lines = []
    for line in ps.stdout.splitlines():
        pid, _, args = line.strip().partition(" ")
        if only is None or int(pid) in only:
            lines.append(args)
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (only is None or int(entry) in only):
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    lines.append(fh.read().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue
    return "\n".join(lines)


def _environments(pids: set[int]) -> str:
    found = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                found.append(fh.read().replace(b"\0", b"\n").decode(errors="replace"))
        except OSError:
            continue
    return "\n".join(found)


def _assert_hidden(secrets: dict[str, str], master: str, ours: set[int], root: int) -> None:
    """No secret in the state endpoints; none in our processes' command lines, and the
    secrets only this test knows in nobody's (other tests may pass the shared admin URL);
    none in the environment of a process ``root`` started (executors, summary, Spark)."""
    shown = _state_endpoints(master)
    ours_argv, all_argv = _command_lines(ours), _command_lines()
    environments = _environments(ours - {root})
    for what, secret in secrets.items():
        assert secret and secret not in shown, f"the {what} password in a state endpoint"
        assert secret not in ours_argv, f"the {what} password on a command line"
        if what != "admin":
            assert secret not in all_argv, f"the {what} password on a command line"
        assert secret not in environments, f"the {what} password in an environment"


def _user(admin_url: str, cwd: Path) -> dict[str, str]:
    name = f"cr_{os.urandom(4).hex()}"
    out = ancho("user", "add", name, cwd=cwd, env={"ANCHO_STORE": admin_url})
    assert out.code == 0, out.stderr
    user: dict[str, str] = out.json()
    return user


def _expected(n: int, seed: int) -> list[dict[str, Any]]:
    model = LoadedModel.load(MODELS / "slow", "model:simulate", {"sleep_s": 0})
    return [r.outputs for r in run_sequences(model, seed, 0, n, 1, OutputNames())]


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


@pytest.fixture
def admin(cassandra_url: str) -> Iterator[CassandraStore]:
    store = open_store(cassandra_url)
    assert isinstance(store, CassandraStore)
    yield store
    store.close()


# --- through ``ancho server`` -----------------------------------------------------------
@pytest.mark.slow
def test_a_server_run_on_cassandra_shows_no_password(
    cassandra_url: str, admin: CassandraStore, tmp_path: Path
) -> None:
    user = _user(cassandra_url, tmp_path)
    owner = CassandraURL.parse(user["store"])
    secrets = {"admin": CassandraURL.parse(cassandra_url).password or "",
               "owner": owner.password or ""}  # fmt: skip
    server = LiveServer(cassandra_url, tmp_path).start()
    assert server.proc is not None
    try:
        status, doc, _ = server.request("POST", "/api/v1/models", user["token"],
                                        pack(MODELS / "slow"),
                                        {"Content-Type": "application/gzip"})  # fmt: skip
        assert status == 201, doc
        spec = {"model": {"source": doc["source"], "entrypoint": "model:simulate"},
                "parameters": {"sleep_s": 0.01}, "sequences": 400, "seed": 5,
                "resources": {"max_executors": 1}}  # fmt: skip
        status, doc, _ = server.request("POST", "/api/v1/runs", user["token"], spec)
        assert status == 201, doc
        rid = doc["id"]

        def run() -> dict[str, Any]:
            status, doc, _ = server.request("GET", f"/api/v1/runs/{rid}", user["token"])
            assert status == 200, doc
            return dict(doc)

        _wait(lambda: run()["counts"]["ok"] > 0, 120, "the run to store sequences")
        assert role_name(rid) in admin.list_roles(ROLE_PREFIX)  # the run's own role
        _assert_hidden(secrets, server.master, _descendants(server.proc.pid), server.proc.pid)
        [framework] = json.loads(_get(server.master, "/master/state"))["frameworks"]
        [executor] = framework["executors"]
        env = {v["name"]: v["value"] for v in executor["command"]["environment"]["variables"]}
        assert env["ANCHO_STORE"] == f"cassandra://127.0.0.1:{owner.port}/{owner.keyspace}"
        assert env["ANCHO_STORE_CREDENTIAL"] == "scheduler"

        final = _wait(lambda: (r := run())["state"] in ("FINISHED", "FAILED") and r, 300,
                      "the run to end")  # fmt: skip
        assert final["state"] == "FINISHED", final
        _wait(lambda: role_name(rid) not in admin.list_roles(ROLE_PREFIX), 30, "the drop")
        _assert_hidden(secrets, server.master, _descendants(server.proc.pid), server.proc.pid)
    finally:
        assert server.stop() == 0
        if "rid" in locals():
            admin.drop_role(role_name(rid))  # a failed test leaves no role behind
    store = open_store(user["store"])
    rows = list(store.iter_results(rid))
    store.close()
    assert [r.sequence for r in rows] == list(range(400))
    assert [r.outputs for r in rows] == _expected(400, 5)


# --- the scheduler in this process: the run's own password is known to the test ---------
@pytest.mark.slow
def test_the_runs_role_works_only_while_its_run_lasts(
    cassandra_url: str, admin: CassandraStore, tmp_path: Path
) -> None:
    user = _user(cassandra_url, tmp_path)
    owner = CassandraURL.parse(user["store"])
    store = RoutingStore(open_store(cassandra_url))
    spec = spec_from_data({"model": SLOW, "parameters": {"sleep_s": 0.01}, "sequences": 300,
                           "seed": 4, "resources": {"max_executors": 1}})  # fmt: skip
    run = new_run(spec, owner=user["user"])
    store.create_run(run)
    credentials = RunCredentials(store.url_for_run, store.admin)
    launch = ExecutorLaunch(executor_command(), executor_environment(tmp_path / "cache"),
                            store.url_for_run, credentials=credentials)  # fmt: skip
    job = SummaryJob(store, work_dir=tmp_path, cache_dir=tmp_path / "cache")
    try:
        with EmbeddedCluster(tmp_path / "mesos", cpus=2) as cluster:
            master = cluster.start()
            service = SchedulerService(store, master, launch, job, SchedulerConfig(), 60.0)
            service.start()
            try:
                service.submit(run)
                _wait(lambda: store.get_run(run.id).ok > 0, 120, "stored sequences")
                url = credentials.store_url(run.id)  # what the executors were sent
                mine = CassandraURL.parse(url)
                assert (mine.username, mine.keyspace) == (role_name(run.id), owner.keyspace)
                secrets = {"admin": CassandraURL.parse(cassandra_url).password or "",
                           "owner": owner.password or "", "run": mine.password or ""}  # fmt: skip
                _assert_hidden(secrets, master, _descendants(os.getpid()), os.getpid())
                # The run's role reads its run; it may not read users, nor another keyspace.
                own = open_store(url)
                assert own.get_run(run.id).owner == user["user"]
                with pytest.raises(StoreError, match="not authorised"):
                    own.list_users()
                own.close()
                admin_keyspace = CassandraURL.parse(cassandra_url).keyspace
                elsewhere = url.rsplit("/", 1)[0] + f"/{admin_keyspace}"
                with pytest.raises(StoreError, match="not authorised"):
                    open_store(elsewhere).list_users()
                _wait(lambda: store.get_run(run.id).done, 300, "the run to end")
                _assert_hidden(secrets, master, _descendants(os.getpid()), os.getpid())
                # Ended: the scheduler dropped the role, which cannot log in any more.
                _wait(lambda: role_name(run.id) not in admin.list_roles(ROLE_PREFIX), 30,
                      "the drop")  # fmt: skip
                with pytest.raises(StoreError, match="authentication failed"):
                    open_store(url)
            finally:
                service.stop(failover=False)
    finally:
        job.close()
        admin.drop_role(role_name(run.id))  # a failed test leaves no role behind (a no-op)
    assert store.get_run(run.id).state == "FINISHED"
    rows = list(store.iter_results(run.id))
    store.close()
    assert [r.outputs for r in rows] == _expected(300, 4)


# --- the executor's side, against a scheduler that answers by hand ----------------------
class _Scheduler(Scheduler):  # type: ignore[misc]
    """Records offers, task states and the executors' framework messages."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.offers: list[Any] = []
        self.statuses: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, float]] = []

    def resourceOffers(self, driver: Any, offers: list[Any]) -> None:
        with self.lock:
            self.offers.extend(offers)

    def statusUpdate(self, driver: Any, status: dict[str, Any]) -> None:
        with self.lock:
            self.statuses.append(status)

    def frameworkMessage(self, driver: Any, executor_id: Any, agent_id: Any, data: Any) -> None:
        message = messages.decode(decode_data(data))
        assert isinstance(message, messages.CredentialRequest)
        with self.lock:
            self.requests.append((executor_id["value"], agent_id["value"], time.monotonic()))

    def status(self, task_id: str, state: str) -> dict[str, Any] | None:
        with self.lock:
            found = [s for s in self.statuses
                     if s["task_id"]["value"] == task_id and s["state"] == state]  # fmt: skip
        return found[0] if found else None

    def asked(self, executor_id: str) -> list[float]:
        with self.lock:
            return [t for e, _, t in self.requests if e == executor_id]


def _executor_task(offer: Any, run_id: str, executor_id: str, env: dict[str, str]) -> Any:
    variables = [{"name": k, "value": v} for k, v in sorted(env.items())]
    data = {"run": run_id, "start": 0, "stop": 20, "attempt": 1}
    scalar: Callable[[str, float], Any] = lambda name, value: {  # noqa: E731
        "name": name, "type": "SCALAR", "scalar": {"value": value}}  # fmt: skip
    return {
        "task_id": {"value": f"{executor_id}.t0"},
        "agent_id": offer["agent_id"],
        "name": "batch",
        "data": encode_data(json.dumps(data).encode()),
        "resources": [scalar("cpus", 0.1), scalar("mem", 32)],
        "executor": {
            "executor_id": {"value": executor_id},
            "command": {"value": executor_command(), "environment": {"variables": variables}},
            "resources": [scalar("cpus", 0.2), scalar("mem", 256)],
        },
    }


@pytest.mark.slow
def test_an_executor_asks_every_second_and_fails_with_the_reason(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'ancho.db'}"
    store = open_store(store_url)
    run = new_run(spec_from_data({"model": SLOW, "parameters": {"sleep_s": 0},
                                  "sequences": 20, "seed": 2}))  # fmt: skip
    store.create_run(run)
    env = {
        **executor_environment(tmp_path / "cache"),
        "ANCHO_RUN_ID": run.id,
        # Not the store: executors open only what the scheduler's answer names.
        "ANCHO_STORE": "sqlite:///proc/no-such-folder/ancho.db",
        "ANCHO_STORE_CREDENTIAL": "scheduler",
        "ANCHO_CREDENTIAL_TIMEOUT_S": "4",
        "ANCHO_MODEL_MEM_MB": "256",
    }
    sched = _Scheduler()
    with EmbeddedCluster(tmp_path / "mesos", cpus=2, mem_mb=2048, disk_mb=1000) as cluster:
        info = {"user": getpass.getuser(), "name": "credential-test"}
        driver = MesosSchedulerDriver(sched, info, cluster.start(), use_addict=False)
        driver.start()
        try:
            offer = _wait(lambda: sched.offers and sched.offers[0], 30, "an offer")
            tasks = [_executor_task(offer, run.id, e, env) for e in ("refused", "answered")]
            driver.launchTasks(offer["id"], tasks)
            # "answered" gets the credential on its second request; "refused" never.
            answered = _wait(lambda: len(sched.asked("answered")) >= 2, 30, "a second ask")
            assert answered
            credential = messages.Credential(run.id, store_url)
            driver.sendFrameworkMessage({"value": "answered"}, offer["agent_id"],
                                        encode_data(credential.encode()))  # fmt: skip
            refusal = messages.CredentialRefused(run.id, "not an executor of this run")
            while not sched.status("refused.t0", "TASK_FAILED"):
                driver.sendFrameworkMessage({"value": "refused"}, offer["agent_id"],
                                            encode_data(refusal.encode()))  # fmt: skip
                time.sleep(0.5)
                assert len(sched.asked("refused")) < 30, "it asks for ever"
            failed = sched.status("refused.t0", "TASK_FAILED")
            assert failed is not None
            assert "no credential for the store" in failed["message"], failed
            assert "not an executor of this run" in failed["message"]
            times = sched.asked("refused")
            gaps = [b - a for a, b in itertools.pairwise(times)]
            assert len(times) >= 3 and all(0.5 < g < 2.5 for g in gaps), gaps
            _wait(lambda: sched.status("answered.t0", "TASK_FINISHED"), 60, "the batch")
        finally:
            driver.stop()
            driver.join()
    rows = list(store.iter_results(run.id))
    assert [r.outputs for r in rows] == _expected(20, 2)
